"""Lesson 1: the original training recipe against the course's default, side by side in one run.

The original research notebook trained the one-head model with Adam at lr 1e-4 for 5000 epochs,
one optimizer step per sentence (10,000 steps). The course's default trains on both sentences at
once (full batch) at lr 0.03. This script trains both from the same seeded initialisation and
times how long the default needs to reach the loss the original ends with.

Requirement (issue 3): default time-to-reach <= 5% of the original's wall time.

    .venv/bin/python benchmarks/bench_attention_toy.py [--device cpu|cuda] [--threads N]
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from toyattn.device import get_device, seed_everything
from toyattn.models.one_head import OneHeadAttention
from toyattn.sentences.corpus import ToyCorpus
from toyattn.sentences.training import DEFAULT_RECIPE, ORIGINAL_RECIPE, Recipe, full_batch_loss, train

SEED = 77
TARGET_RATIO = 0.05


def fresh_model(device: torch.device) -> OneHeadAttention:
    seed_everything(SEED)
    return OneHeadAttention.from_corpus(ToyCorpus(), d_head=20).to(device)


def timed_train(recipe: Recipe, device: torch.device, threads: int | None, stop_below: float | None = None):
    """Train a fresh seeded model; return (model, losses, seconds)."""
    model = fresh_model(device)
    inputs, targets = ToyCorpus().tensors(device)
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    losses = train(model, inputs, targets, recipe, device=device, progress=False, stop_below=stop_below,
                   threads=threads)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return model, losses, time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default: toyattn.device.get_device())")
    parser.add_argument("--threads", type=int, default=1,
                        help="CPU threads for both recipes (default 1; 0 keeps PyTorch's default)")
    args = parser.parse_args(argv)
    device = get_device(args.device)
    threads = None if args.threads == 0 else args.threads
    inputs, targets = ToyCorpus().tensors(device)
    print(f"device: {device}, torch threads: {threads or torch.get_num_threads()}, seed {SEED}")

    # Warm up once (first calls allocate and load kernels), so neither recipe pays for it.
    timed_train(Recipe(lr=1e-3, epochs=20), device, threads)

    original, original_losses, original_s = timed_train(ORIGINAL_RECIPE, device, threads)
    target = full_batch_loss(original, inputs, targets)
    _, reach_losses, reach_s = timed_train(DEFAULT_RECIPE, device, threads, stop_below=target)
    default, default_losses, default_s = timed_train(DEFAULT_RECIPE, device, threads)
    reached = reach_losses[-1] < target

    steps_original = ORIGINAL_RECIPE.epochs * 2
    rows = [
        ("original: per-sentence, lr 1e-4", steps_original, original_s, target),
        (f"default to reach {target:.4f}", len(reach_losses), reach_s, reach_losses[-1]),
        ("default, all 300 steps", len(default_losses), default_s, full_batch_loss(default, inputs, targets)),
    ]
    print()
    print(f"{'recipe':<34}{'Adam steps':>11}{'wall s':>9}{'final loss':>12}{'time / original':>17}")
    for name, steps, seconds, loss in rows:
        print(f"{name:<34}{steps:>11}{seconds:>9.3f}{loss:>12.4f}{seconds / original_s:>16.2%}")
    ratio = reach_s / original_s
    print()
    print(f"ratio (default time to reach the original's final loss / original time): {ratio:.4f} "
          f"= {ratio:.2%} (required <= {TARGET_RATIO:.0%})")
    ok = reached and ratio <= TARGET_RATIO
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
