"""toyattn.symmetry.tuning and the sliced Grams it chooses between: every slicing gives the same traces,
the fastest candidate is the one kept, and only CUDA is timed."""

from __future__ import annotations

import time

import pytest
import torch

import toyattn.symmetry.traces as traces_module
import toyattn.symmetry.tuning as tuning
from toyattn.symmetry.scores import symmetry_score, symmetry_score_definition
from toyattn.symmetry.traces import grams, traces


@pytest.mark.parametrize("q_shape, k_shape", [
    ((6, 512), (6, 512)),                     # one head in row layout [d_head, d_model]
    ((3, 4, 6, 512), (3, 4, 6, 512)),         # layers x heads
    ((2, 8, 5, 512), (2, 2, 5, 512)),         # grouped-query attention, odd d_head
    ((4, 1, 512), (1, 1, 512)),               # d_head = 1, one key head for all
])
@pytest.mark.parametrize("parts", [2, 4, 8])
def test_sliced_grams_equal_the_whole_products(q_shape, k_shape, parts):
    g = torch.Generator().manual_seed(parts)
    Q = torch.randn(*q_shape, generator=g, dtype=torch.float64)
    K = torch.randn(*k_shape, generator=g, dtype=torch.float64)
    group = q_shape[-3] // k_shape[-3] if len(q_shape) > 2 else 1
    for sliced, whole in zip(grams(Q, K, group, parts=parts), grams(Q, K, group), strict=True):
        assert sliced.shape == whole.shape == (*q_shape[:-1], q_shape[-2])
        torch.testing.assert_close(sliced, whole, rtol=1e-12, atol=1e-10)
    # And the traces equal the definition's (M built in full), through the public score too.
    norm2, trace_cc = traces(Q, K, group, parts=parts)
    r = 0.5 * (1 + trace_cc / norm2)
    expected = symmetry_score_definition(Q.transpose(-1, -2), K.transpose(-1, -2))
    torch.testing.assert_close(r, expected, rtol=1e-12, atol=1e-12)


def test_slices_are_not_the_heads_transposed():
    # A wrong slicing (cutting d_head instead of d_model, or mixing heads) gives other traces: the
    # comparison above could tell. Here, a skew-symmetric pair (r = 0) and a symmetric one (r = 1).
    g = torch.Generator().manual_seed(3)
    W_q = torch.randn(2, 1024, 8, generator=g, dtype=torch.float64)
    S = torch.randn(8, 8, generator=g, dtype=torch.float64)
    W_k = torch.stack([W_q[0] @ (S - S.T), W_q[1]])  # head 0 skew, head 1 W_k = W_q
    norm2, trace_cc = traces(W_q.transpose(-1, -2), W_k.transpose(-1, -2), 1, parts=4)
    torch.testing.assert_close(0.5 * (1 + trace_cc / norm2), torch.tensor([0.0, 1.0], dtype=torch.float64),
                               rtol=0, atol=1e-12)


@pytest.mark.parametrize("parts", [0, 3, -2])
def test_parts_must_divide_d_model(parts):
    Q = torch.randn(2, 4, 512)
    with pytest.raises(ValueError, match="positive divisor of d_model=512"):
        grams(Q, Q, 1, parts=parts)


def test_candidates_divide_d_model_and_keep_wide_slices():
    assert tuning.candidate_parts(4096) == [1, 2, 4, 8, 16]
    assert tuning.candidate_parts(768) == [1, 2]       # 768 / 4 = 192 columns: too narrow
    assert tuning.candidate_parts(4100) == [1, 2, 4]   # 4100 / 8 is not whole
    assert tuning.candidate_parts(100) == [1]


def test_the_fastest_candidate_is_kept(monkeypatch):
    # Every slicing but 4 is made slow: the tuner must pick 4 (not the first, the last or the slowest).
    real = traces_module.grams

    def timed_grams(Q, K, group, *, parts=1):
        if parts != 4:
            time.sleep(0.01)
        return real(Q, K, group, parts=parts)

    monkeypatch.setattr(traces_module, "grams", timed_grams)
    Q = torch.randn(4, 8, 4096)
    assert tuning.fastest_parts(Q, Q, 1, repeats=2) == 4


@pytest.fixture
def sliced_grams_do_not_fit(monkeypatch):
    """``grams`` as on a GPU short of memory: slicing copies Q and K, and that copy does not fit."""
    real = traces_module.grams

    def short_of_memory(Q, K, group, *, parts=1):
        if parts > 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return real(Q, K, group, parts=parts)

    monkeypatch.setattr(traces_module, "grams", short_of_memory)


def test_a_candidate_that_runs_out_of_memory_is_left_out(sliced_grams_do_not_fit):
    Q = torch.randn(4, 8, 4096)
    assert tuning.fastest_parts(Q, Q, 1, repeats=1) == 1


def test_a_slicing_that_no_longer_fits_falls_back_to_whole_products(monkeypatch, sliced_grams_do_not_fit):
    monkeypatch.setattr(tuning, "best_parts", lambda *a: 4)  # chosen earlier, when memory was free
    g = torch.Generator().manual_seed(5)
    Q = torch.randn(3, 4, 512, generator=g, dtype=torch.float64)
    K = torch.randn(3, 4, 512, generator=g, dtype=torch.float64)
    for got, expected in zip(traces(Q, K, 1), traces(Q, K, 1, parts=1), strict=True):
        torch.testing.assert_close(got, expected, rtol=0, atol=0)


def test_only_cuda_is_timed(monkeypatch):
    def no_timing(*args, **kwargs):
        raise AssertionError("the CPU must not be timed")

    monkeypatch.setattr(tuning, "fastest_parts", no_timing)
    Q = torch.randn(32, 128, 4096)
    assert tuning.best_parts(Q, Q, 1) == 1


@pytest.mark.gpu
def test_the_gpu_choice_is_timed_once_per_shape_and_scores_match_the_cpu(monkeypatch):
    tuning.clear_cache()
    calls = []
    real = tuning.fastest_parts
    monkeypatch.setattr(tuning, "fastest_parts", lambda *a, **k: calls.append(1) or real(*a, **k))
    g = torch.Generator().manual_seed(0)
    W_Q = torch.randn(2, 32, 4096, 128, generator=g) * 0.02
    W_K = 0.5 * W_Q + torch.randn(2, 32, 4096, 128, generator=g) * 0.02
    on_gpu = symmetry_score(W_Q.cuda(), W_K.cuda())
    again = symmetry_score(W_Q.cuda(), W_K.cuda())
    assert len(calls) == 1, "the same shape was timed twice"
    parts = tuning.best_parts(W_Q.cuda().transpose(-1, -2), W_K.cuda().transpose(-1, -2), 1)
    assert parts in tuning.candidate_parts(4096)
    expected = symmetry_score(W_Q.double(), W_K.double())
    torch.testing.assert_close(on_gpu.cpu(), expected, rtol=0, atol=1e-5)
    torch.testing.assert_close(again, on_gpu, rtol=0, atol=1e-6)
