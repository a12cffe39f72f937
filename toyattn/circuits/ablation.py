"""Causal tests of one attention head in a hooked transformer: ablate it, or remove a subspace from what it writes.

Taught in lesson 5 (``notebooks/05_induction_circuits``), after lesson 1's edge ablation and
patching (:mod:`toyattn.sentences.interventions`, whose :func:`~toyattn.sentences.interventions.patch_activation`
patches a head's output here too). Every intervention is a temporary hook on the model's hook
points (``blocks.{l}.attn.hook_z`` ``[batch, pos, n_heads, d_head]``, ``blocks.{l}.hook_attn_out``
``[batch, pos, d_model]``), removed afterwards even if something raises.

The copying-task helpers score logits on a :class:`~toyattn.circuits.copy_task.CopyBatch` and build the
corrupted inputs of the patching experiment.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch

from toyattn.hooks import HookedModule, HookPoint

__all__ = [
    "ablate_head",
    "project_out",
    "orthonormal_basis",
    "random_subspace",
]


def _check_head(model: HookedModule, layer: int, head: int) -> str:
    name = f"blocks.{layer}.attn.hook_z"
    if name not in model.hook_points:
        raise ValueError(f"The model has no layer {layer} (no hook point {name!r}).")
    n_heads = model.blocks[layer].attn.W_Q.shape[0]
    if not 0 <= head < n_heads:
        raise ValueError(f"head must be in [0, {n_heads}) for layer {layer}, got {head}.")
    return name


@torch.no_grad()
def ablate_head(
    model: HookedModule,
    tokens: torch.Tensor,
    layer: int,
    head: int,
    mode: Literal["zero", "mean"] = "zero",
    reference: torch.Tensor | None = None,
    mean_z: torch.Tensor | None = None,
) -> torch.Tensor:
    """Logits with head ``head`` of layer ``layer`` silenced (its ``z``, so its output, replaced).

    ``mode="zero"``: ``z = 0``, as if the head were cut out. ``mode="mean"``: ``z`` is replaced at
    each position by its mean over the sequences of ``reference`` (default: ``tokens`` themselves),
    so the head keeps its average output but no longer says anything about *this* sequence. Mean
    ablation is the gentler control: a collapse under it is not an artefact of an unusual zero input.
    ``mean_z [pos, d_head]``: that mean, already computed (e.g. from a cache of a run you already
    have), so that no reference run is needed; it must cover ``tokens``' positions.
    """
    name = _check_head(model, layer, head)
    if mean_z is not None:
        if mode != "mean" or reference is not None:
            raise ValueError("mean_z is the mean of a mean ablation: pass it with mode='mean' and no reference.")
        if mean_z.shape[0] != tokens.shape[-1]:
            raise ValueError(f"mean_z must be [pos={tokens.shape[-1]}, d_head], got {tuple(mean_z.shape)}.")
    elif mode == "mean":
        ref = tokens if reference is None else reference
        if ref.shape[-1] != tokens.shape[-1]:
            raise ValueError(f"reference sequences must have tokens' length {tokens.shape[-1]}, got {ref.shape[-1]}.")
        _, cache = model.run_with_cache(ref, names_filter=name)
        mean_z = cache[name][:, :, head].mean(dim=0)  # [pos, d_head]
    elif mode != "zero":
        raise ValueError(f"mode must be 'zero' or 'mean', got {mode!r}.")

    def replace(z: torch.Tensor, *, hook: HookPoint) -> torch.Tensor:
        z = z.clone()
        z[:, :, head] = 0.0 if mode == "zero" else mean_z.to(z)
        return z

    return model.run_with_hooks(tokens, fwd_hooks=[(name, replace)])


def orthonormal_basis(directions: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Orthonormal columns ``[d, r]`` spanning the columns of ``directions [d, r]`` (QR)."""
    D = torch.as_tensor(np.asarray(directions), dtype=torch.float64) if isinstance(directions, np.ndarray) else directions.double()
    if D.dim() != 2 or D.shape[1] > D.shape[0]:
        raise ValueError(f"directions must be [d, r] with r <= d, got shape {tuple(D.shape)}.")
    return torch.linalg.qr(D).Q


def random_subspace(d: int, r: int, generator: torch.Generator) -> torch.Tensor:
    """A uniformly random ``r``-dimensional subspace of ``R^d`` as orthonormal columns ``[d, r]``."""
    return orthonormal_basis(torch.randn(d, r, generator=generator, dtype=torch.float64))


@torch.no_grad()
def project_out(model: HookedModule, tokens: torch.Tensor, layer: int, basis: torch.Tensor) -> torch.Tensor:
    """Logits with the subspace spanned by ``basis [d_model, r]`` (orthonormal columns) removed from layer ``layer``'s attention output.

    Each position's output ``x`` becomes ``x - (x B) B^T``; the rest of what the layer writes passes unchanged.
    """
    name = f"blocks.{layer}.hook_attn_out"
    if name not in model.hook_points:
        raise ValueError(f"The model has no layer {layer} (no hook point {name!r}).")
    B = torch.as_tensor(basis)
    if B.dim() != 2 or not torch.allclose(B.T.double() @ B.double(), torch.eye(B.shape[1], dtype=torch.float64), atol=1e-5):
        raise ValueError("basis must have orthonormal columns [d_model, r]; build it with orthonormal_basis(directions).")

    def remove(x: torch.Tensor, *, hook: HookPoint) -> torch.Tensor:
        Bx = B.to(x)
        return x - (x @ Bx) @ Bx.T

    return model.run_with_hooks(tokens, fwd_hooks=[(name, remove)])
