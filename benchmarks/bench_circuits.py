"""Benchmark for lesson 4: training speed on the copying task and metric evaluation over 100 checkpoints.

Run: ``.venv/bin/python benchmarks/bench_circuits.py`` (about a minute on a 2-core CPU;
``--quick`` for a smoke test). Everything is measured side by side in this one run:

1. training steps per second of the lesson's model, with one torch thread vs torch's default
   thread count (and on the GPU, when there is one);
2. time to compute all lesson-4 weight metrics (``toyattn.circuits.matching.circuit_metrics``) for 100
   checkpoints held in memory vs loaded from disk with ``weights_only=True``, and the random
   baseline.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch

from toyattn.circuits import matching
from toyattn.circuits.copy_task import CopyTaskConfig, TrainConfig, train_copy_model


def steps_per_second(steps: int, device: str, threads: int | None) -> float:
    # checkpoint_every > steps: only the initial and final checkpoints, so evaluation barely counts.
    train = TrainConfig(steps=steps, checkpoint_every=steps, n_test=64, cpu_threads=threads)
    run = train_copy_model(CopyTaskConfig(), train=train, device=device, progress=False)
    return steps / run.seconds


def timed(fn, repeat: int = 1) -> float:
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - start) / repeat


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for a smoke test")
    args = parser.parse_args()
    steps = 40 if args.quick else 300
    n_ckpt = 10 if args.quick else 100
    default_threads = torch.get_num_threads()

    rows: list[tuple[str, float, str]] = []
    one = steps_per_second(steps, "cpu", 1)
    many = steps_per_second(steps, "cpu", None)
    rows.append(("train, CPU, 1 thread", one, "steps/s"))
    rows.append((f"train, CPU, {default_threads} threads (torch default)", many, "steps/s"))
    gpu = None
    if torch.cuda.is_available():
        steps_per_second(20, "cuda", None)  # warm-up
        gpu = steps_per_second(steps, "cuda", None)
        rows.append(("train, GPU", gpu, "steps/s"))

    # 100 checkpoints: train n_ckpt - 1 checkpoint intervals of 2 steps (plus the initial one).
    train = TrainConfig(steps=2 * (n_ckpt - 1), checkpoint_every=2, n_test=32)
    mem_run = train_copy_model(CopyTaskConfig(), train=train, device="cpu", progress=False)
    with tempfile.TemporaryDirectory() as tmp:
        disk_run = train_copy_model(CopyTaskConfig(), train=train, checkpoint_dir=tmp, device="cpu", progress=False)
        assert len(mem_run) == len(disk_run) == n_ckpt

        def all_metrics(run):
            return [matching.circuit_metrics(run.load(i), ranks=(4, 8)) for i in range(len(run))]

        t_mem = timed(lambda: all_metrics(mem_run))
        t_disk = timed(lambda: all_metrics(disk_run))
        t_load = timed(lambda: [disk_run.load(i) for i in range(len(disk_run))])
    t_base = timed(lambda: matching.random_baseline(32, 4, n_runs=50))
    rows.append((f"metrics, {n_ckpt} checkpoints in memory", t_mem, "s"))
    rows.append((f"metrics, {n_ckpt} checkpoints from disk (weights_only)", t_disk, "s"))
    rows.append((f"  of which loading {n_ckpt} files", t_load, "s"))
    rows.append(("random baseline, 50 Gaussian pairs, d=32", t_base, "s"))

    print(f"torch {torch.__version__}, default threads {default_threads}, "
          f"CUDA: {torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'none'}")
    width = max(len(r[0]) for r in rows)
    print(f"{'measurement':<{width}} | {'value':>9} | unit")
    print(f"{'-' * width}-+-{'-' * 9}-+------")
    for name, value, unit in rows:
        print(f"{name:<{width}} | {value:9.3f} | {unit}")
    print()
    print(f"ratio, 1 thread vs {default_threads} threads (training): {one / many:.2f}x")
    if gpu is not None:
        print(f"ratio, GPU vs best CPU (training): {gpu / max(one, many):.2f}x")
    print(f"ratio, disk vs memory (metrics over {n_ckpt} checkpoints): {t_disk / t_mem:.2f}x")
    print(f"per checkpoint, all metrics: {1000 * t_mem / n_ckpt:.1f} ms")


if __name__ == "__main__":
    main()
