"""Lesson 0's timing helpers: fair medians, the crossover read off two curves, the toy's step."""

from __future__ import annotations

import pytest
import torch

from toyattn.device.timing import first_win, matmul_seconds, median_seconds
from toyattn.sentences.training import toy_step_flops, toy_step_seconds


def test_first_win_is_the_size_from_which_the_faster_device_stays_faster():
    sizes = [16, 64, 256, 1024]
    cpu = [1.0, 2.0, 8.0, 64.0]
    assert first_win(sizes, cpu, [5.0, 5.0, 5.0, 5.0]) == 256
    assert first_win(sizes, cpu, [0.5, 0.5, 0.5, 0.5]) == 16
    # A win by noise at a small size, then losses: the crossover is only where it stays faster.
    assert first_win(sizes, cpu, [0.9, 3.0, 4.0, 10.0]) == 256
    assert first_win(sizes, cpu, [2.0, 3.0, 9.0, 65.0]) is None
    assert first_win(sizes, cpu, [0.5, 0.5, 0.5, 70.0]) is None  # loses at the largest size: no crossover


def test_first_win_refuses_curves_of_different_lengths():
    with pytest.raises(ValueError, match="one entry each per size"):
        first_win([16, 64], [1.0, 2.0], [1.0])


def test_median_seconds_warms_up_then_times_each_repeat():
    calls = []
    seconds = median_seconds(lambda: calls.append(1), torch.device("cpu"), repeats=5, warmup=2)
    assert len(calls) == 7 and seconds >= 0
    with pytest.raises(ValueError, match="repeats must be an integer >= 1"):
        median_seconds(lambda: None, torch.device("cpu"), repeats=0)


def test_median_seconds_waits_with_the_given_sync_before_each_clock_reading():
    events = []
    median_seconds(lambda: events.append("work"), torch.device("cpu"), repeats=2, warmup=1,
                   sync=lambda: events.append("sync"))
    assert events == ["work", "sync", "work", "sync", "work", "sync"]


def test_a_larger_product_takes_longer_on_the_cpu():
    # 512^3 is 4096x the work of 32^3: no scheduler noise on a shared machine hides that.
    assert matmul_seconds(512, "cpu", repeats=3) > matmul_seconds(32, "cpu", repeats=3)
    with pytest.raises(ValueError, match="size must be an integer >= 1"):
        matmul_seconds(0, "cpu")


def test_the_toy_step_is_counted_and_timed():
    # Forward: q, k ([10, 7] @ [7, 20]: 2 * 10 * 7 * 20 = 2800 each), v ([10, 7] @ [7, 7]: 980), the scores
    # (2 x [5, 20] @ [20, 5]: 2000) and pattern @ v (2 x [5, 5] @ [5, 7]: 700) = 9280; backward twice that.
    assert toy_step_flops() == 3 * (2800 + 2800 + 980 + 2000 + 700) == 27_840
    assert toy_step_seconds("cpu", steps=3) > 0
    with pytest.raises(ValueError, match="threads must be an integer >= 1"):
        toy_step_seconds("cpu", threads=0)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_timings_wait_for_the_device():
    # A 2048 product queued on the GPU returns at once; the median must include the work itself.
    # 2 * 2048^3 = 17 GFLOP: at least about 0.1 ms even at an H100's float32 rate; a launch alone returns sooner.
    assert matmul_seconds(2048, "cuda", repeats=3) > 1e-4
    assert toy_step_seconds("cuda", steps=3) > 0
