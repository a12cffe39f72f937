"""Benchmark for lesson 5: out-of-distribution error against the size of the training pool, several seeds each.

Run: ``.venv/bin/python benchmarks/bench_pool_size.py`` (18 training runs of the lesson's model, 6 pool
sizes x 3 seeds; ``--quick`` for a smoke test). It prints, per pool size, the mean and standard
deviation over seeds of the final ID and OOD errors and of the QK-OV matching, the measured time of
the whole sweep, and writes the numbers to ``benchmarks/results/pool_size_sweep.json`` (``--steps 1500
--out benchmarks/results/pool_size_sweep_1500.json`` for the longer schedule), which
``notebooks/05_induction_circuits`` plots (the notebook itself cannot train 36 models in its time limit).

The runs train together as one stacked model (``toyattn.circuits.sweeps.train_copy_models``: each run
ends where it would end alone, up to rounding); ``--one-at-a-time`` trains them one after another as the
recorded results in ``benchmarks/results/`` were made.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from toyattn.circuits import matching
from toyattn.circuits.copy_task import CopyTaskConfig, TrainConfig, default_model_config, train_copy_model
from toyattn.circuits.sweeps import train_copy_models

OUT = Path(__file__).parent / "results" / "pool_size_sweep.json"
RANK = 4  # the QK-OV matching's rank (match_largest_4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 sizes x 1 seed x 50 steps, no file written")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--out", type=Path, default=OUT, help=f"where to write the numbers (default {OUT})")
    parser.add_argument("--one-at-a-time", action="store_true", help="train the runs one after another, not stacked")
    args = parser.parse_args()
    sizes: list[int | None] = [10, 30, 100, 300, 1000, None]
    seeds = [0, 1, 2]
    steps = args.steps
    if args.quick:
        sizes, seeds, steps = [10, None], [0], 50
    task = CopyTaskConfig()
    rows = []
    start = time.perf_counter()
    pairs = [(seed, size) for size in sizes for seed in seeds]
    schedule = dict(steps=steps, checkpoint_every=steps)
    if args.one_at_a_time:
        runs = [train_copy_model(task, pool_size=size, train=TrainConfig(seed=seed, **schedule), device="cpu", progress=False)
                for seed, size in pairs]
    else:
        runs = train_copy_models(task, runs=pairs, train=TrainConfig(**schedule), device="cpu", progress=False)
    for (seed, size), run in zip(pairs, runs, strict=True):
        m = matching.circuit_metrics(run.model, ranks=(RANK,))
        rows.append({"pool_size": size, "seed": seed, "id_error": run.history["id_error"][-1],
                     "ood_error": run.history["ood_error"][-1], f"match_largest_{RANK}": m[f"match_largest_{RANK}"],
                     "seconds": run.seconds})
        print(f"pool {size!s:>5} seed {seed}: ID {rows[-1]['id_error']:.3f}  OOD {rows[-1]['ood_error']:.3f}  "
              f"match {m['match_largest_4']:.3f}", flush=True)
    total = time.perf_counter() - start
    print(f"\n{'pool':>6} | {'ID error':>15} | {'OOD error':>15} | {'QK-OV match r=4':>15}")
    for size in sizes:
        sel = [r for r in rows if r["pool_size"] == size]
        cell = lambda k, sel=sel: f"{np.mean([r[k] for r in sel]):.3f} +- {np.std([r[k] for r in sel]):.3f}"  # noqa: E731
        print(f"{size!s:>6} | {cell('id_error'):>15} | {cell('ood_error'):>15} | {cell('match_largest_4'):>15}")
    print(f"\nsweep: {len(rows)} runs of {steps} steps in {total:.0f} s on {platform.processor() or platform.machine()}, "
          f"torch {torch.__version__}, one thread, {'one at a time' if args.one_at_a_time else 'stacked'}")
    if not args.quick:
        args.out.parent.mkdir(exist_ok=True)
        train = dataclasses.asdict(TrainConfig(**schedule))
        train.pop("seed")  # each run's seed is in its row
        config = {
            "task": dataclasses.asdict(task), "train": train, "model": dataclasses.asdict(default_model_config(task)),
            "rank": RANK, "training": "one run at a time (train_copy_model)" if args.one_at_a_time
            else "stacked, all runs together (train_copy_models)",
            "device": "cpu", "torch": torch.__version__, "threads": train["cpu_threads"],
            "machine": f"{platform.processor() or platform.machine()}, {platform.platform()}",
        }
        args.out.write_text(json.dumps({"steps": steps, "seconds": total, "stacked": not args.one_at_a_time,
                                        "config": config, "runs": rows}, indent=1))
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
