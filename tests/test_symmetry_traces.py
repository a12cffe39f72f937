"""toyattn.symmetry.traces: the head-by-head path equals the batched one."""

from __future__ import annotations

import pytest
import torch

from toyattn.symmetry.scores import (
    symmetry_score,
    symmetry_score_definition,
)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("q_shape, k_shape", [
    ((20, 4), (20, 4)),                      # one head
    ((3, 6, 20, 4), (3, 6, 20, 4)),          # layers x heads
    ((2, 3, 6, 20, 4), (2, 3, 2, 20, 4)),    # extra leading axis, grouped-query attention
    ((5, 20, 5), (5, 20, 5)),                # odd d_head: the two row halves differ in size
    ((4, 20, 1), (2, 20, 1)),                # d_head = 1 (an empty top half), GQA
])
def test_head_by_head_path_equals_the_batched_path(monkeypatch, q_shape, k_shape):
    # Large CPU heads take a head-by-head loop (cache reuse, half of A and B skipped by symmetry); it
    # must give the batched path's numbers.
    import toyattn.symmetry.traces as sym

    g = gen(11)
    W_Q = torch.randn(*q_shape, generator=g)
    W_K = torch.randn(*k_shape, generator=g)
    batched = symmetry_score(W_Q, W_K)
    calls = []
    real_loop = sym._traces_head_by_head
    monkeypatch.setattr(sym, "_traces_head_by_head", lambda *a: calls.append(1) or real_loop(*a))
    monkeypatch.setattr(sym, "PER_HEAD_LOOP_MIN_SIZE", 1)
    looped = symmetry_score(W_Q, W_K)
    assert calls, "the head-by-head path was not taken"
    assert looped.shape == batched.shape == q_shape[:-2]
    torch.testing.assert_close(looped, batched, rtol=1e-6, atol=1e-6)
    expected = symmetry_score_definition(W_Q.double(), W_K.double())
    torch.testing.assert_close(looped, expected, rtol=1e-5, atol=1e-5)
