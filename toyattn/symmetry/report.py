"""The symmetry scores of a whole model, read one layer at a time: ``score_model`` and its report (lesson 3).

Taught in lesson 3 (``notebooks/03_symmetry_scores``, section "real models"): the loaders of
:mod:`toyattn.weights.checkpoints` hand over one layer's ``W_Q, W_K`` at a time, and the scores of
:mod:`toyattn.symmetry.scores` are taken per head and per layer, so a large file is never in memory at once.
"""

from __future__ import annotations

from contextlib import closing
from dataclasses import dataclass
from typing import Any

import torch

from toyattn.device import get_device
from toyattn.progress import progress as progress_bar
from toyattn.symmetry.scores import (
    directionality_score,
    layer_bilinear,
    matrix_symmetry_score,
    median,
    symmetry_score,
    to_signed,
)
from toyattn.weights.checkpoints import iter_qk_layers
from toyattn.weights.prefetch import read_ahead as read_ahead_layers

__all__ = ["SymmetryReport", "score_model"]


@dataclass
class SymmetryReport:
    """Scores of a whole model (lesson 3), every number in the ``r`` convention (in [0, 1]).

    Attributes:
        name: where the weights came from.
        architecture: ``"bert"``, ``"gpt2"``, ``"llama"``, ``"toyattn"``, ...
        head_scores: ``[n_layers, n_heads]`` per-head ``r`` (the seeds' granularity).
        layer_scores: ``[n_layers]`` per-layer ``r`` of ``sum_h W_q[h] W_k[h]^T`` (the paper's), or None.
        directionality: ``[n_layers]`` directionality of the per-layer ``M`` (paper's sign), or None.
        n_kv_heads: key heads per layer (fewer than ``n_heads`` under grouped-query attention).
    """

    name: str
    architecture: str
    head_scores: torch.Tensor
    layer_scores: torch.Tensor | None = None
    directionality: torch.Tensor | None = None
    n_kv_heads: int | None = None

    @property
    def n_layers(self) -> int:
        return int(self.head_scores.shape[0])

    @property
    def n_heads(self) -> int:
        return int(self.head_scores.shape[1])

    def summary(self) -> str:
        """One paragraph of the numbers worth quoting, each labelled with its convention (medians: :func:`median`)."""
        h = self.head_scores
        lines = [
            f"{self.name} ({self.architecture}): {self.n_layers} layers x {self.n_heads} heads"
            + (f", {self.n_kv_heads} key heads (grouped-query)" if self.n_kv_heads and self.n_kv_heads < self.n_heads else ""),
            f"  per head : mean r = {h.mean():.3f}, median r = {median(h):.3f}  "
            f"(s = 2r-1: mean {to_signed(h.mean()):+.3f}, median {to_signed(median(h)):+.3f})",
        ]
        if self.layer_scores is not None:
            s = to_signed(self.layer_scores)
            lines.append(
                f"  per layer: median s = {median(s):+.3f} (r = {median(self.layer_scores):.3f}), "
                f"mean s = {s.mean():+.3f}"
            )
        if self.directionality is not None:
            lines.append(f"  per layer directionality: median {median(self.directionality):+.3f}")
        return "\n".join(lines)


def score_model(
    source: Any,
    *,
    layer_scores: bool = True,
    device: str | torch.device | None = None,
    progress: bool | None = None,
    fold_qk_norm: bool = True,
    read_ahead: bool | None = None,
    **loader_kwargs: Any,
) -> SymmetryReport:
    """Symmetry (and directionality) scores of every layer and head of a model (lesson 3).

    Args:
        source: anything :func:`toyattn.weights.checkpoints.iter_qk_layers` reads: a ``.safetensors`` file
            or model directory, a ``.gguf`` file, a Hugging Face model object or state dict, a toyattn
            ``Transformer``, or a Hugging Face model name (needs network access to the hub).
        layer_scores: also compute the per-layer ``d_model x d_model`` form, its score and
            directionality (``O(d_model^3)`` per layer: skip it for 7B-sized layers on a CPU).
        device: where to compute (default :func:`toyattn.device.get_device`). Weights are read one
            layer at a time and moved there, so a file is never in memory all at once.
        fold_qk_norm: for models that normalise each head's queries and keys (Gemma 3), score the form
            the attention uses, with the norms' gains folded in (``False``: the raw projections).
        read_ahead: read (and move to ``device``) the next layer in a background thread while this one is
            scored (:func:`toyattn.weights.prefetch.read_ahead`); ``False`` reads one layer after the other.
            Default: on CUDA (reading uses the CPU and the disk, scoring the GPU); not on the CPU, where the
            reader's conversions compete with the scores for the same cores (``benchmarks/bench_symmetry.py``
            times both), nor on Apple's MPS, where feeding the device from a second thread has not been tested.
        loader_kwargs: passed to the loader (``n_heads=``, ``n_kv_heads=``, ``architecture=``).
    """
    dev = get_device(device)
    layers = iter_qk_layers(source, fold_qk_norm=fold_qk_norm, **loader_kwargs)
    if read_ahead is None:
        read_ahead = dev.type == "cuda"
    stream = read_ahead_layers(layers, dev) if read_ahead else (layer.map(lambda t: t.to(dev)) for layer in layers)
    # Scores stay on the device and come back together at the end: one transfer, not one per layer.
    head_rows, layer_rows, dir_rows = [], [], []
    with closing(stream):  # an error below stops the reader too
        for layer in progress_bar(stream, total=layers.n_layers, desc="layers", enabled=progress):
            try:
                head_rows.append(symmetry_score(layer.W_Q, layer.W_K))
            except ValueError as err:
                raise ValueError(f"layer {layer.layer}: {err}") from None
            if layer_scores:
                M = layer_bilinear(layer.W_Q, layer.W_K)
                layer_rows.append(matrix_symmetry_score(M))
                dir_rows.append(directionality_score(M))
            del layer  # at most two layers (this one and the one being read) are held at a time
    return SymmetryReport(
        name=layers.name,
        architecture=layers.architecture,
        head_scores=torch.stack(head_rows).cpu(),
        layer_scores=torch.stack(layer_rows).cpu() if layer_scores else None,
        directionality=torch.stack(dir_rows).cpu() if layer_scores else None,
        n_kv_heads=layers.n_kv_heads,
    )
