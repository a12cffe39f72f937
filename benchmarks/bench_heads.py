"""Benchmark for lesson 2: recovering shuffled heads at the size of a 7B model's layer (d_in = 4096).

For H = 12, 32 and 128 heads (d_head 64, 128 and 32), one run measures, side by side:

* the time to build the cost matrix from raw weights and from the rotation-invariant W_QK / W_OV
  features (computed with Gram blocks, never forming the d_in x d_in matrices), and the time of the
  greedy and the Hungarian matching on it;
* the fraction of heads recovered when the client is the reference with shuffled heads plus
  Gaussian noise of NOISE times the weights' std, without and with a random rotation inside every
  head (a symmetry raw weights cannot see through).

A last line compares the Gram-block route with forming W_QK / W_OV explicitly, at a size where the
explicit route still fits in memory.

Run: ``.venv/bin/python benchmarks/bench_heads.py [--device cpu|cuda] [--quick]``. Under 2 minutes on a
2-core CPU. Timings are wall-clock, one repetition each (the cost dominates and repeats add little).
"""

from __future__ import annotations

import argparse
import time

import torch

from toyattn.device import get_device, seed_everything
from toyattn.heads.matching import cost_matrix, invariant_cost_matrix, invariant_features, match, raw_features
from toyattn.heads.permutations import random_permutation, recovery_accuracy
from toyattn.heads.weights import HeadWeights, rotate_within_heads

D_IN = 4096
CONFIGS = ((12, 64), (32, 128), (128, 32))  # (n_heads, d_head): GPT-2/BERT-like, Llama-2-7B-like, many small heads
NOISE = 40.0  # noise std / weight std: far above the weights, yet with d_in = 4096 each head has ~1M numbers


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(device: torch.device, fn, *args):
    _sync(device)
    start = time.perf_counter()
    out = fn(*args)
    _sync(device)
    return out, time.perf_counter() - start


def random_layer(n_heads: int, d_head: int, d_in: int, gen: torch.Generator, device: torch.device) -> HeadWeights:
    def w(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=gen).to(device)

    return HeadWeights(w(n_heads, d_in, d_head), w(n_heads, d_in, d_head), w(n_heads, d_in, d_head), W_O=w(n_heads, d_head, d_in))


def raw_cost(client: HeadWeights, ref: HeadWeights) -> torch.Tensor:
    return cost_matrix(raw_features(client), raw_features(ref))


def explicit_invariant_cost(client: HeadWeights, ref: HeadWeights) -> torch.Tensor:
    return cost_matrix(invariant_features(client), invariant_features(ref))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default: toyattn.device.get_device())")
    parser.add_argument("--quick", action="store_true", help="d_in = 256 instead of 4096 (a smoke test)")
    args = parser.parse_args(argv)
    device = get_device(args.device)
    d_in = 256 if args.quick else D_IN
    run_start = time.perf_counter()
    gen = seed_everything(0)

    print(f"Head recovery, d_in = {d_in}, noise = {NOISE} x weight std, device {device}, torch {torch.__version__}")
    print(f"threads: {torch.get_num_threads()}. Accuracy = fraction of heads put back in place (1 trial each).\n")
    header = (
        f"{'H':>4} {'d_head':>6} {'features':>9} | {'cost s':>7} {'greedy ms':>9} {'Hung. ms':>8} | "
        f"{'noise: greedy':>13} {'Hung.':>5} | {'+rotation: greedy':>17} {'Hung.':>5}"
    )
    print(header)
    print("-" * len(header))
    cost_seconds: dict[tuple[int, str], float] = {}
    for n_heads, d_head in CONFIGS:
        ref = random_layer(n_heads, d_head, d_in, gen, device)
        perm = random_permutation(n_heads, gen)
        noisy = ref.permute(perm).add_noise(NOISE, gen)
        rotated = rotate_within_heads(noisy, gen)
        for features in ("raw", "invariant"):
            acc: dict[tuple[str, str], float] = {}
            times: dict[str, float] = {}
            for scenario, client in (("noise", noisy), ("rotation", rotated)):
                cost_fn = raw_cost if features == "raw" else invariant_cost_matrix
                cost, sec = timed(device, cost_fn, client, ref)
                if scenario == "noise":
                    times["cost"] = sec
                for method in ("greedy", "hungarian"):
                    found, msec = timed(device, match, cost, method)
                    if scenario == "noise":
                        times[method] = msec
                    acc[(scenario, method)] = recovery_accuracy(found, perm)
            cost_seconds[(n_heads, features)] = times["cost"]
            print(
                f"{n_heads:>4} {d_head:>6} {features:>9} | {times['cost']:>7.2f} {1e3 * times['greedy']:>9.2f} "
                f"{1e3 * times['hungarian']:>8.2f} | {acc[('noise', 'greedy')]:>13.2f} {acc[('noise', 'hungarian')]:>5.2f} | "
                f"{acc[('rotation', 'greedy')]:>17.2f} {acc[('rotation', 'hungarian')]:>5.2f}"
            )
    print()
    for n_heads, _ in CONFIGS:
        ratio = cost_seconds[(n_heads, "invariant")] / cost_seconds[(n_heads, "raw")]
        print(f"H = {n_heads:>3}: invariant cost matrix takes {ratio:.1f}x the time of the raw one")

    # Gram blocks vs explicit W_QK / W_OV, at a size where the explicit features fit (d_in = 1024, 12 heads).
    small_d_in = 256 if args.quick else 1024
    small_ref = random_layer(12, 64, small_d_in, gen, device)
    small_client = small_ref.permute(random_permutation(12, gen))
    explicit, t_explicit = timed(device, explicit_invariant_cost, small_client, small_ref)
    gram, t_gram = timed(device, invariant_cost_matrix, small_client, small_ref)
    rel = float((explicit - gram).abs().max() / explicit.max())
    print(
        f"d_in = {small_d_in}, 12 heads: explicit W_QK/W_OV {t_explicit:.2f} s, Gram blocks {t_gram:.3f} s "
        f"(time ratio explicit / Gram = {t_explicit / t_gram:.1f}; largest difference {rel:.1e} of the largest cost). "
        f"At d_in = 4096 and 128 heads the explicit features alone would need "
        f"{2 * 128 * 4096 * 4096 * 4 / 2**30:.0f} GiB per model."
    )
    print(f"whole benchmark: {time.perf_counter() - run_start:.0f} s")


if __name__ == "__main__":
    main()
