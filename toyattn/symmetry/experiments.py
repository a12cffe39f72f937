"""Lesson 3's experiments on trained toy models: symmetric against standard initialisation, and the gradient of ``W_q W_k^T``.

Taught in lesson 3 (``notebooks/03_symmetry_scores``, sections 7-8); the runs come from
:func:`toyattn.symmetry.training.train_runs`.

* :func:`symmetric_init_experiment`: steps to reach a fixed loss from the standard initialisation, from
  the symmetric one (``W_k = W_q``) and from its control (``W_k = W_q D``, symmetric but indefinite), per
  seed, for the masked and the causal objective.
* :func:`bilinear_gradients`: ``dL/dM`` of every head's bilinear form ``M = W_q W_k^T``, one term per
  (query, key) pair, the object of the argument for why bidirectional objectives favour symmetric ``M``.
* :func:`bilinear_update`: what a whole training run added to every head's ``M``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from toyattn.device import cpu_threads
from toyattn.models.transformer import Transformer
from toyattn.symmetry.training import (
    INITS,
    OBJECTIVES,
    SymmetryRun,
    _check_choice,
    _objective_loss,
    train_runs,
)

__all__ = ["SymmetricInitResult", "bilinear_gradients", "bilinear_update", "symmetric_init_experiment"]


# ---------------------------------------------------------------------------------------------
# Symmetric initialisation against the standard one
# ---------------------------------------------------------------------------------------------


@dataclass
class SymmetricInitResult:
    """Steps to a fixed loss, per objective, init and seed (lesson 3).

    Attributes:
        thresholds: ``{objective: loss}`` the loss each objective's runs had to reach.
        steps: ``{(objective, init): [n_seeds]}`` steps taken to reach it (NaN: not within the budget).
        traces: every run's :class:`SymmetryRun`, ``{(objective, init): [per seed]}``.
        seeds: the seeds, in order.
    """

    thresholds: dict[str, float]
    steps: dict[tuple[str, str], np.ndarray]
    traces: dict[tuple[str, str], list[SymmetryRun]]
    seeds: list[int]

    def inits(self) -> list[str]:
        """The inits that were trained, standard first."""
        first = next(iter(self.thresholds))
        return [init for init in INITS if (first, init) in self.steps]

    def ratio(self, objective: str, init: str = "symmetric") -> np.ndarray:
        """Per seed, ``init`` steps / standard steps (below 1: ``init`` got there sooner)."""
        return self.steps[(objective, init)] / self.steps[(objective, "standard")]

    def summary(self) -> str:
        """Per objective: steps (mean ± std over seeds) for each init, and each init's paired ratio to standard."""
        lines = []
        for objective, threshold in self.thresholds.items():
            steps = ", ".join(f"{init} {_mean_std(self.steps[(objective, init)])}" for init in self.inits())
            lines.append(f"{objective} (loss <= {threshold}): steps {steps}")
            for init in self.inits()[1:]:
                ratio = self.ratio(objective, init)
                lines.append(
                    f"  {init}/standard per seed {_mean_std(ratio, '.2f')} {_range(ratio)}; "
                    f"{init} sooner in {int(np.sum(ratio < 1))} of {len(ratio)} seeds"
                )
        return "\n".join(lines)


def _range(x: np.ndarray) -> str:
    reached = x[np.isfinite(x)]
    return f"(min {reached.min():.2f}, max {reached.max():.2f})" if len(reached) else "(no seed reached it with both)"


def _mean_std(x: np.ndarray, fmt: str = ".0f") -> str:
    reached = x[np.isfinite(x)]
    if len(reached) == 0:
        return "never reached"
    text = f"{reached.mean():{fmt}} ± {reached.std(ddof=1) if len(reached) > 1 else 0.0:{fmt}}"
    return text if len(reached) == len(x) else f"{text} ({len(x) - len(reached)} never reached)"


def symmetric_init_experiment(
    thresholds: dict[str, float],
    *,
    seeds: Sequence[int] = (0, 1, 2, 3, 4),
    steps: int = 600,
    inits: Sequence[str] = INITS,
    **kwargs: Any,
) -> SymmetricInitResult:
    """Steps to reach ``thresholds[objective]`` from each of ``inits`` (lesson 3, section 8).

    For each objective, every (seed, init) run trains in the same batched steps (:func:`train_runs`)
    and stops when all have reached the loss, or after ``steps``. Runs of one seed share their initial
    weights (but for ``W_K``) and their batches, so the per-seed ratio compares like with like.
    """
    if not isinstance(thresholds, dict) or not thresholds:
        raise ValueError("thresholds must be a dict {objective: loss}, e.g. {'masked': 2.8, 'causal': 1.5}.")
    _check_choice(thresholds, OBJECTIVES, "thresholds' keys")
    seeds = [int(s) for s in seeds]
    inits = _check_choice(inits, INITS, "inits")
    if inits[0] != "standard":
        raise ValueError(f"inits must start with 'standard', the baseline every ratio is taken against; got {inits}.")
    out_steps, traces = {}, {}
    for objective, threshold in thresholds.items():
        runs = train_runs(objective, seeds=seeds, inits=inits, steps=steps, stop_below=threshold, **kwargs)
        for init in inits:
            traces[(objective, init)] = [t for t in runs if t.init == init]
            reached = [t.steps_to_loss(threshold) for t in traces[(objective, init)]]
            out_steps[(objective, init)] = np.array([np.nan if r is None else r for r in reached], dtype=float)
    return SymmetricInitResult(dict(thresholds), out_steps, traces, seeds)


# ---------------------------------------------------------------------------------------------
# The gradient of the bilinear form
# ---------------------------------------------------------------------------------------------


def bilinear_gradients(
    model: Transformer,
    windows: torch.Tensor,
    masked: torch.Tensor | None = None,
    *,
    mask_id: int | None = None,
    split_diagonal: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """``dL/dM`` for every head's bilinear form ``M = W_Q[h] W_K[h]^T``, ``[n_layers, n_heads, d_model, d_model]``.

    The score of query position ``i`` against key position ``j`` is ``x_i M x_j^T / sqrt(d_head)`` (plus
    bias terms), with ``x`` the attention layer's input, so ``dL/dM = sum_{b,i,j} g_bij x_bi^T x_bj / sqrt(d_head)``
    with ``g_bij = dL/dscore_bij``: one term per (query, key) pair. The loss is the model's objective
    (causal if ``model.cfg.causal``, else masked, hiding ``masked [batch, seq_len]`` behind ``mask_id``)
    on ``windows [batch, seq_len + 1]``. Learned or no positions only: rotary positions act between
    ``W_Q`` and ``W_K``, so ``M`` alone does not give the score.

    With ``split_diagonal=True`` it returns ``(off_diagonal, diagonal)``, the sums over pairs ``i != j``
    and over the self-pairs ``i = j`` (each ``g_bii x_bi^T x_bi`` is exactly symmetric, under causal
    masking too); they add up to the full gradient.
    """
    if not isinstance(model, Transformer):
        raise TypeError(f"bilinear_gradients expects a toyattn Transformer, got {type(model).__name__}.")
    if model.cfg.positions == "rotary":
        raise ValueError("With rotary positions the score is not x M y^T; use positions='learned' or 'none'.")
    objective = "causal" if model.cfg.causal else "masked"
    if objective == "masked" and (masked is None or mask_id is None):
        raise ValueError("A bidirectional (masked) model needs masked= (which positions to hide) and mask_id=.")
    inputs: list[torch.Tensor] = []
    scores: list[torch.Tensor] = []
    handles = [block.ln1.register_forward_hook(lambda _m, _a, out: inputs.append(out)) for block in model.blocks]

    def keep(t: torch.Tensor, hook: Any = None) -> torch.Tensor:
        t.retain_grad()
        scores.append(t)
        return t

    hooks = [(f"blocks.{i}.attn.hook_attn_scores", keep) for i in range(len(model.blocks))]
    scale = 1.0 / math.sqrt(model.cfg.d_head)
    try:
        with cpu_threads(_threads_for(model)), model.hooks(hooks):
            loss = _objective_loss(objective, model, windows, masked if masked is not None else windows[:, :-1] < 0, mask_id or 0)
            model.zero_grad(set_to_none=True)
            loss.backward()
            # scores' grad is zero where the causal mask set -inf, so the sum runs over allowed pairs only.
            full = torch.stack([
                torch.einsum("bhij,bid,bje->hde", s.grad, x.detach(), x.detach()) * scale
                for s, x in zip(scores, inputs, strict=True)
            ])
            if not split_diagonal:
                return full
            diagonal = torch.stack([
                torch.einsum("bhi,bid,bie->hde", s.grad.diagonal(dim1=-2, dim2=-1), x.detach(), x.detach()) * scale
                for s, x in zip(scores, inputs, strict=True)
            ])
            return full - diagonal, diagonal
    finally:
        for h in handles:
            h.remove()


def _threads_for(model: Transformer) -> int | None:
    """One CPU thread for the lesson's tiny models: several times faster (see toyattn.device.cpu_threads)."""
    return 1 if model.device.type == "cpu" and model.cfg.d_model <= 128 else None


def bilinear_update(trace: SymmetryRun) -> torch.Tensor:
    """What training added to every head's ``M = W_Q[h] W_K[h]^T``: ``M_final - M_initial``, ``[n_layers, n_heads, d, d]``.

    The initial weights are rebuilt from the trace's seed and init (as :func:`train_runs` drew them).
    """
    final, start = trace.model(), trace.initial_model()
    with cpu_threads(_threads_for(final)):
        return _head_forms(final) - _head_forms(start)


def _head_forms(model: Transformer) -> torch.Tensor:
    W_Q = torch.stack([b.attn.W_Q.detach() for b in model.blocks])
    W_K = torch.stack([b.attn.W_K.detach() for b in model.blocks])
    return W_Q @ W_K.transpose(-1, -2)
