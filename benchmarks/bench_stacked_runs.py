"""Sweeps one run at a time against all runs stacked into one batched model, side by side in one run.

1. Lesson 1's sweep (12 seeds of the one-head model, the default recipe of 300 full-batch steps), trained
   twice from the same seeds: one ``train_one_head`` after another, and all at once with
   ``train_one_heads`` (``toyattn.stacked``).
2. Lessons 4-5's copy task: 6 runs (seeds 0-2, pool of 100 and fresh patterns), ``--copy-steps`` steps
   each, with ``train_copy_model`` one after another and with ``train_copy_models`` together.

Prints runs per second of each way, their ratio, and how far the two ways' results are apart.

    .venv/bin/python benchmarks/bench_stacked_runs.py [--device cpu|cuda] [--runs 12] [--copy-steps 200]
"""

from __future__ import annotations

import argparse
import time

import torch

from toyattn.circuits.copy_task import TrainConfig, train_copy_model
from toyattn.circuits.sweeps import train_copy_models
from toyattn.device import get_device
from toyattn.sentences.training import train_one_head, train_one_heads


def table(title: str, n: int, alone_s: float, together_s: float, gap: float) -> None:
    print(f"\n{title}")
    print(f"{'way':<28}{'wall s':>9}{'runs/s':>9}")
    print(f"{'one run after another':<28}{alone_s:>9.2f}{n / alone_s:>9.2f}")
    print(f"{'stacked, all together':<28}{together_s:>9.2f}{n / together_s:>9.2f}")
    print(f"stacked runs/s = {alone_s / together_s:.2f}x one-at-a-time's; largest result gap {gap:.1e}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default: toyattn.device.get_device())")
    parser.add_argument("--runs", type=int, default=12, help="seeds 0..runs-1 (default 12, lesson 1's sweep)")
    parser.add_argument("--copy-steps", type=int, default=200, help="steps of each copy-task run (default 200)")
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
    table(f"lesson 1: {args.runs} seeds x 300 steps (gap: final loss)", args.runs, alone_s, together_s, gap)

    runs = [(seed, pool) for pool in (100, None) for seed in range(3)]
    schedule = dict(steps=args.copy_steps, checkpoint_every=args.copy_steps, n_test=256)
    train_copy_models(runs=runs[:2], train=TrainConfig(steps=2, n_test=8), device=device, progress=False)  # warm-up
    start = time.perf_counter()
    alone = [train_copy_model(pool_size=pool, train=TrainConfig(seed=seed, **schedule), device=device, progress=False)
             for seed, pool in runs]
    alone_s = time.perf_counter() - start
    start = time.perf_counter()
    together = train_copy_models(runs=runs, train=TrainConfig(**schedule), device=device, progress=False)
    together_s = time.perf_counter() - start
    gap = max(abs(a.history["ood_error"][-1] - b.history["ood_error"][-1]) for a, b in zip(alone, together, strict=True))
    table(f"lessons 4-5: copy task, {len(runs)} runs x {args.copy_steps} steps (gap: final OOD error)",
          len(runs), alone_s, together_s, gap)


if __name__ == "__main__":
    main()
