"""Benchmark for lesson 3: scoring the packaged SmolLM2 GGUF, reading its header with toyattn.weights.gguf
against gguf.GGUFReader, side by side in one run.

Rows (best of ``--repeat`` runs each, the two ways alternated so machine noise hits both alike):

* opening the file: ``GGUFReader(path)`` (parses every metadata value, the tokenizer's included)
  against ``GGUFFile(path)`` (steps over the arrays);
* ``score_model`` end to end on the CPU, once with the course's reader and once with the same loader
  fed by ``GGUFReader`` (what the course did before; identical scores are asserted).

Target (issue 15): ``score_model`` end to end <= 1.5 s on 2 CPUs and >= 4x faster than with GGUFReader.

Usage: ``python benchmarks/bench_gguf.py [--repeat 3]`` (needs ``make pretrained``).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import gguf
import numpy as np
import torch

import toyattn.weights.gguf
from toyattn.symmetry.report import score_model
from toyattn.weights.gguf import GGUFFile
from toyattn.weights.pretrained import smollm2_gguf_path

_KEYS = ("general.architecture", "general.name", "llama.attention.head_count", "llama.attention.head_count_kv",
         "llama.block_count")


class ReaderAdapter:
    """The course's loader interface (metadata, dequantize) on top of ``gguf.GGUFReader``: the old path."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        reader = gguf.GGUFReader(str(path))
        self.metadata = {k: reader.fields[k].contents() for k in _KEYS if k in reader.fields}
        self.tensors = {t.name: t for t in reader.tensors}

    def dequantize(self, name: str) -> np.ndarray:
        t = self.tensors[name]
        shape = tuple(int(n) for n in reversed(t.shape))
        return np.array(gguf.quants.dequantize(t.data, t.tensor_type).reshape(shape), dtype=np.float32)


def timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    path = smollm2_gguf_path()
    torch.set_num_threads(min(2, torch.get_num_threads()))
    print(f"file: {path.name} ({path.stat().st_size / 2**20:.0f} MiB), torch threads {torch.get_num_threads()}")

    open_reader, open_ours, score_reader, score_ours = [], [], [], []
    for _ in range(args.repeat):
        open_reader.append(timed(lambda: gguf.GGUFReader(str(path)))[0])
        open_ours.append(timed(lambda: GGUFFile(path))[0])
        toyattn.weights.gguf.GGUFFile = ReaderAdapter  # the loader imports it by name at call time
        try:
            t, old = timed(lambda: score_model(path, device="cpu", progress=False))
        finally:
            toyattn.weights.gguf.GGUFFile = GGUFFile
        score_reader.append(t)
        t, new = timed(lambda: score_model(path, device="cpu", progress=False))
        score_ours.append(t)
        torch.testing.assert_close(new.head_scores, old.head_scores, rtol=0, atol=0)

    def row(what: str, before: list[float], after: list[float]) -> None:
        b, a = min(before), min(after)
        print(f"{what:<34} GGUFReader {b:7.3f} s   toyattn.weights.gguf {a:7.3f} s   ratio {b / a:6.1f}x")

    row("open the file", open_reader, open_ours)
    row("score_model end to end", score_reader, score_ours)
    best = min(score_ours)
    print(f"target: end to end <= 1.5 s ({'met' if best <= 1.5 else 'MISSED'}: {best:.2f} s), "
          f">= 4x ({'met' if min(score_reader) / best >= 4 else 'MISSED'})")


if __name__ == "__main__":
    main()
