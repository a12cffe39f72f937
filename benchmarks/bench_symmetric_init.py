"""Benchmark for lesson 3: symmetric against standard initialisation, the full grid the notebook cannot afford.

For each objective (masked, causal) every seed trains three times from the same weights and batches: as
initialised, with ``W_K = W_Q`` (Saponati et al.'s symmetric init) and with ``W_K = W_Q D`` (its control,
symmetric but indefinite), for ``--steps`` steps. Prints, for several loss thresholds, the steps to reach
each (moving average of 20 steps): mean ± std over seeds per init, the per-seed ratio of each symmetric
start to the standard one, and in how many seeds it got there first. Then the symmetry (per-layer r) of what training added to ``M`` and of the gradient ``dL/dM`` at
the end, masked against causal. The wall time of each part is measured and printed.

Usage: ``python benchmarks/bench_symmetric_init.py [--seeds 10] [--steps 600]``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from toyattn.symmetry.experiments import bilinear_gradients, bilinear_update
from toyattn.symmetry.scores import matrix_symmetry_score
from toyattn.symmetry.training import INITS, CharTask, char_batches, train_runs

THRESHOLDS = {"masked": (3.0, 2.8, 2.6, 2.4), "causal": (2.5, 2.0, 1.5, 1.0)}


def mean_std(x: np.ndarray, fmt: str = ".0f") -> str:
    ok = x[np.isfinite(x)]
    missing = f" ({len(x) - len(ok)} not reached)" if len(ok) < len(x) else ""
    return (f"{ok.mean():{fmt}} ± {ok.std(ddof=1):{fmt}}" if len(ok) > 1 else "-") + missing


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--steps", type=int, default=600)
    args = parser.parse_args()
    seeds = range(args.seeds)
    print(f"{args.seeds} seeds x {INITS} x {args.steps} steps, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads available (training uses 1)")
    runs = {}
    for objective, thresholds in THRESHOLDS.items():
        start = time.perf_counter()
        runs[objective] = train_runs(objective, seeds=seeds, inits=INITS, steps=args.steps, record_every=args.steps,
                                     progress=False, device="cpu")
        print(f"\n{objective}: {len(runs[objective])} runs trained in {time.perf_counter() - start:.1f} s")
        for threshold in thresholds:
            steps = {init: np.array([t.steps_to_loss(threshold) or np.nan for t in runs[objective] if t.init == init],
                                    dtype=float) for init in INITS}
            print(f"  loss <= {threshold}: " + ", ".join(f"{init} {mean_std(steps[init])}" for init in INITS) + " steps")
            for init in INITS[1:]:  # the symmetric start and its indefinite control, each against standard
                ratio = steps[init] / steps["standard"]
                print(f"    {init}/standard {mean_std(ratio, '.2f')}, {init} sooner in {int(np.sum(ratio < 1))} "
                      f"of {len(ratio)} seeds")

    start = time.perf_counter()
    task = CharTask.from_text(None, 16)
    print("\nPer-layer r (max over the layers) of the update M_final - M_initial and of dL/dM at the end "
          "(8 fresh batches), standard init:")
    rows = []
    for masked, causal in zip(*(
        [t for t in runs[o] if t.init == "standard"] for o in ("masked", "causal")
    ), strict=True):
        windows, hidden = char_batches(task, 1000 + masked.seed, 8, 32, 16, 0.15)
        row = []
        for trace in (masked, causal):
            update = matrix_symmetry_score(bilinear_update(trace).sum(dim=1)).max()
            model = trace.model()
            grad = sum(bilinear_gradients(model, windows[k], hidden[k], mask_id=task.mask_id) for k in range(8))
            row += [float(update), float(matrix_symmetry_score(grad.sum(dim=1)).max())]
        rows.append(row)
        print(f"  seed {masked.seed}: update masked {row[0]:.2f} causal {row[2]:.2f} | "
              f"gradient masked {row[1]:.2f} causal {row[3]:.2f}")
    rows = np.array(rows)
    print(f"  update: masked more symmetric in {int(np.sum(rows[:, 0] > rows[:, 2]))} of {len(rows)} seeds; "
          f"gradient: in {int(np.sum(rows[:, 1] > rows[:, 3]))} of {len(rows)} "
          f"({time.perf_counter() - start:.1f} s)")


if __name__ == "__main__":
    main()
