"""One head's circuits read out of a model: its weights with the norm folded in, QK and OV as factors, and their top directions.

Taught in lesson 4 (``notebooks/04_qk_ov_matching``, reading a trained toy's circuits) and lesson 5
(``notebooks/05_induction_circuits``: the toy's circuits with the layer norm folded in, then
SmolLM2's). A head is a one-head :class:`~toyattn.heads.weights.HeadWeights` (the course's one
container of head weights): :func:`head_factors` takes it out of any hooked model, with the key/value
head it reads under grouped-query attention. Its circuits come dense (:func:`qk_matrix`,
:func:`ov_matrix`, ``[d_model, d_model]``) or as :class:`~toyattn.circuits.factored.Factored` pairs
(:func:`qk_factors`, :func:`ov_factors`), which the matching and composition scores accept as they are.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from toyattn.arrays import as_matrix
from toyattn.circuits.factored import Factored, right_directions
from toyattn.circuits.matching import qk_ov_matching, rotary_matrix
from toyattn.heads.weights import HeadWeights, fold_norm

__all__ = [
    "head_factors",
    "qk_factors",
    "ov_factors",
    "qk_matrix",
    "ov_matrix",
    "token_matrices",
    "key_directions",
    "output_directions",
    "bridge_matching",
]


def head_factors(model: Any, layer: int, head: int, fold: bool = True) -> HeadWeights:
    """Head ``head`` of layer ``layer`` as a one-head :class:`HeadWeights`, float64 (``W_Q [1, d_model, d_head]``...).

    Grouped-query models: the key/value head the query head reads. ``fold=True`` multiplies the
    rows of ``W_Q``, ``W_K``, ``W_V`` by the gain of the norm before attention (RMSNorm, or
    LayerNorm, whose centring is also folded in), so the circuits read the residual stream itself,
    up to one positive scale per token (see :func:`toyattn.heads.weights.fold_norm`).
    """
    heads = HeadWeights.from_model(model, layer, fold_norm=fold)
    return heads.head(head).map(lambda t: t.detach().double())


def _one(head: HeadWeights, name: str) -> np.ndarray:
    if not isinstance(head, HeadWeights) or head.n_heads != 1:
        raise TypeError(f"expected one head as given by head_factors(model, layer, head), got {type(head).__name__}"
                        + (f" with {head.n_heads} heads" if isinstance(head, HeadWeights) else "") + ".")
    t = getattr(head, name)
    if t is None:
        raise ValueError(f"this head has no {name}; read it with head_factors(model, layer, head).")
    return as_matrix(t[0], name)


def qk_factors(head: HeadWeights, distance: int = 0, base: float = 10000.0) -> Factored:
    """The QK circuit ``W_Q R(distance) W_K^T / sqrt(d_head)`` kept as ``Factored(W_Q R / sqrt(d_head), W_K)``."""
    W_Q, W_K = _one(head, "W_Q"), _one(head, "W_K")
    d_head = W_Q.shape[1]
    R = np.eye(d_head) if distance == 0 else rotary_matrix(d_head, distance, base)
    return Factored(W_Q @ R / math.sqrt(d_head), W_K)


def ov_factors(head: HeadWeights) -> Factored:
    """The OV circuit ``W_V W_O`` kept as ``Factored(W_V, W_O^T)``."""
    return Factored(_one(head, "W_V"), _one(head, "W_O").T)


def qk_matrix(head: HeadWeights, distance: int = 0, base: float = 10000.0) -> np.ndarray:
    """A head's QK circuit ``[d_model, d_model]`` (as :func:`toyattn.circuits.matching.qk_circuit` of its weights)."""
    return qk_factors(head, distance, base).matrix()


def ov_matrix(head: HeadWeights) -> np.ndarray:
    """A head's OV circuit ``W_ov = W_V W_O`` ``[d_model, d_model]``."""
    return ov_factors(head).matrix()


def key_directions(head: HeadWeights) -> np.ndarray:
    """Key-side directions of the head's QK circuit at distance 0 (right singular vectors, largest first), ``[d_model, d_head]``.

    Distance 0 (no rotary matrix), as in Song et al.'s analysis of real models.
    """
    return right_directions(qk_factors(head))


def output_directions(head: HeadWeights) -> np.ndarray:
    """Output directions of the head's OV circuit (right singular vectors, largest first), ``[d_model, d_head]``."""
    return right_directions(ov_factors(head))


def token_matrices(model: Any) -> tuple[np.ndarray, np.ndarray]:
    """``(W_E [vocab, d_model], W_U [d_model, vocab])`` of a hooked model, float64, the final norm folded into ``W_U``.

    The final norm's gain (and, for LayerNorm, its centring) is folded into ``W_U`` as
    :func:`head_factors` folds ``ln1`` into a head, so ``x W_U`` is the logit up to one positive
    scale per token. Any unembedding bias is left out: it is the same for every source token.
    """
    W_E = model.embed.W_E if hasattr(model, "embed") else model.W_E
    W_U = model.unembed.weight.T if hasattr(model, "unembed") else model.W_U
    W_E, W_U = as_matrix(W_E, "W_E"), as_matrix(W_U, "W_U")
    norm = model.ln_final
    if hasattr(norm, "weight"):
        gain = norm.weight.detach()
        W_U = fold_norm(W_U, gain, center=isinstance(norm, torch.nn.LayerNorm))
    return W_E, W_U


def bridge_matching(model: Any, pairs: list[tuple[tuple[int, int], tuple[int, int]]], rank: int, distance: int) -> np.ndarray:
    """Lesson 5's QK-OV matching at a query-key ``distance``, for each ``(writer, reader)`` head pair: ``[len(pairs)]``.

    :func:`~toyattn.circuits.matching.qk_ov_matching` of the reader's ``W_Q R(distance) W_K^T`` (rotary
    base from the model) and the writer's ``W_V W_O``, largest cosine; each head is read once (lesson 6).
    """
    heads: dict[tuple[int, int], HeadWeights] = {}

    def head(key: tuple[int, int]) -> HeadWeights:
        if key not in heads:
            heads[key] = head_factors(model, *key)
        return heads[key]

    base = getattr(model.cfg, "rope_base", getattr(model.cfg, "rotary_base", 10000.0))
    return np.array([qk_ov_matching(qk_factors(head(r), distance, base), ov_factors(head(w)), rank) for w, r in pairs])
