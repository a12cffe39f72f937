"""toyattn.weights.prefetch: read_ahead hands over every layer in order, reads the next one meanwhile, and stops cleanly."""

from __future__ import annotations

import threading
import time

import pytest
import torch
from model_helpers import tiny_llama

from toyattn.heads.weights import HeadWeights
from toyattn.symmetry.report import score_model
from toyattn.weights.checkpoints import iter_qk_layers
from toyattn.weights.prefetch import read_ahead


class SlowLayers:
    """A stand-in for QKLayers: each read sleeps, and the reads are logged (start, end) with the layer index."""

    def __init__(self, n: int, read_seconds: float = 0.0, fail_at: int | None = None) -> None:
        self.n, self.read_seconds, self.fail_at = n, read_seconds, fail_at
        self.log: list[tuple[str, int]] = []
        g = torch.Generator().manual_seed(0)
        self.weights = [(torch.randn(2, 8, 4, generator=g), torch.randn(2, 8, 4, generator=g)) for _ in range(n)]

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> HeadWeights:
        self.log.append(("start", i))
        time.sleep(self.read_seconds)
        if i == self.fail_at:
            raise ValueError(f"layer {i}: unreadable")
        self.log.append(("end", i))
        return HeadWeights(*self.weights[i], layer=i)


def reader_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("toyattn-read-ahead")]


def test_every_layer_arrives_in_order_and_unchanged():
    layers = SlowLayers(5)
    got = list(read_ahead(layers, "cpu"))
    assert [layer.layer for layer in got] == [0, 1, 2, 3, 4]
    for layer, (W_Q, W_K) in zip(got, layers.weights, strict=True):
        assert torch.equal(layer.W_Q, W_Q) and torch.equal(layer.W_K, W_K)
    assert list(read_ahead(SlowLayers(0), "cpu")) == []


def test_the_next_layer_is_read_while_the_caller_works():
    # Reading and working take 0.1 s each: one after the other 8 x 0.2 s; overlapped about 9 x 0.1 s.
    def consume(stream) -> float:
        start = time.perf_counter()
        for _ in stream:
            time.sleep(0.1)
        return time.perf_counter() - start

    plain_layers = SlowLayers(8, read_seconds=0.1)
    plain = consume(plain_layers[i] for i in range(len(plain_layers)))
    ahead_layers = SlowLayers(8, read_seconds=0.1)
    ahead = consume(read_ahead(ahead_layers, "cpu"))
    assert ahead < 0.75 * plain, f"read-ahead took {ahead:.2f} s, reading one after the other {plain:.2f} s"
    starts = [i for kind, i in ahead_layers.log if kind == "start"]
    assert starts == list(range(8)), "each layer is read once, in order"


def test_at_most_one_layer_is_read_ahead_of_the_caller():
    layers = SlowLayers(6)
    for i, layer in enumerate(read_ahead(layers, "cpu")):
        time.sleep(0.02)  # give the reader time to run ahead if it could
        started = [j for kind, j in layers.log if kind == "start"]
        assert max(started) <= i + 1, f"while layer {i} was in use the reader had started layer {max(started)}"
        assert layer.layer == i


def test_a_reading_error_surfaces_at_its_layer_after_the_earlier_ones():
    layers = SlowLayers(5, fail_at=2)
    seen = []
    with pytest.raises(ValueError, match="layer 2: unreadable"):
        for layer in read_ahead(layers, "cpu"):
            seen.append(layer.layer)
    assert seen == [0, 1]
    assert not reader_threads()


def test_stopping_early_stops_the_reader():
    layers = SlowLayers(10, read_seconds=0.01)
    stream = read_ahead(layers, "cpu")
    for layer in stream:
        if layer.layer == 2:
            break
    stream.close()
    assert not reader_threads()
    assert max(i for kind, i in layers.log if kind == "start") <= 3  # the one in flight, no further


def test_score_model_gives_the_same_scores_with_and_without_read_ahead(monkeypatch):
    import toyattn.symmetry.report as report

    calls = []
    real = report.read_ahead_layers
    monkeypatch.setattr(report, "read_ahead_layers", lambda *a: calls.append(1) or real(*a))
    model = tiny_llama()
    ahead = score_model(model, device="cpu", progress=False, read_ahead=True)  # not the CPU's default
    plain = score_model(model, device="cpu", progress=False, read_ahead=False)
    assert calls == [1], "read_ahead=True did not read ahead"
    assert torch.equal(ahead.head_scores, plain.head_scores)
    assert torch.equal(ahead.layer_scores, plain.layer_scores)
    assert torch.equal(ahead.directionality, plain.directionality)
    assert ahead.head_scores.shape == (len(iter_qk_layers(model)), model.cfg.n_heads)


@pytest.mark.gpu
def test_read_ahead_moves_layers_to_the_gpu_unchanged():
    layers = SlowLayers(4)
    for layer, (W_Q, W_K) in zip(read_ahead(layers, "cuda"), layers.weights, strict=True):
        assert layer.W_Q.device.type == "cuda"
        assert torch.equal(layer.W_Q.cpu(), W_Q) and torch.equal(layer.W_K.cpu(), W_K)


@pytest.mark.gpu
def test_score_model_on_the_gpu_matches_the_cpu():
    model = tiny_llama()
    gpu = score_model(model, device="cuda", progress=False)
    cpu = score_model(model, device="cpu", progress=False)
    assert gpu.head_scores.device.type == "cpu"
    torch.testing.assert_close(gpu.head_scores, cpu.head_scores, rtol=1e-5, atol=1e-6)
