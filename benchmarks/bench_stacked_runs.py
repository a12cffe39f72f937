"""A seed sweep one run at a time against all runs stacked into one batched model, side by side in one run.

Lesson 1's sweep (12 seeds of the one-head model, the default recipe of 300 full-batch steps) is trained
twice from the same seeds: one ``train_one_head`` after another, and all at once with
``train_one_heads`` (``toyattn.stacked``). Prints runs per second of each and their ratio, and how far
the two ways' final losses are apart.

    .venv/bin/python benchmarks/bench_stacked_runs.py [--device cpu|cuda] [--runs 12]
"""

from __future__ import annotations

import argparse
import time

import torch

from toyattn.device import get_device
from toyattn.one_head_training import train_one_head, train_one_heads


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default: toyattn.device.get_device())")
    parser.add_argument("--runs", type=int, default=12, help="seeds 0..runs-1 (default 12, lesson 1's sweep)")
    args = parser.parse_args(argv)
    device = get_device(args.device)
    seeds = range(args.runs)
    print(f"device: {device}, torch {torch.__version__}, {args.runs} runs of lesson 1's default recipe (one CPU thread)")
    train_one_heads([0, 1], device=device, progress=False)  # warm-up: first calls load kernels
    train_one_head(seed=0, device=device, progress=False)

    start = time.perf_counter()
    alone = [train_one_head(seed=s, device=device, progress=False) for s in seeds]
    alone_s = time.perf_counter() - start
    start = time.perf_counter()
    together = train_one_heads(seeds, device=device, progress=False)
    together_s = time.perf_counter() - start

    gap = max(abs(a.losses[-1] - b.losses[-1]) for a, b in zip(alone, together, strict=True))
    print(f"{'way':<28}{'wall s':>9}{'runs/s':>9}")
    print(f"{'one run after another':<28}{alone_s:>9.2f}{args.runs / alone_s:>9.1f}")
    print(f"{'stacked, all together':<28}{together_s:>9.2f}{args.runs / together_s:>9.1f}")
    print(f"stacked runs/s = {alone_s / together_s:.2f}x one-at-a-time's; largest final-loss gap {gap:.1e}")


if __name__ == "__main__":
    main()
