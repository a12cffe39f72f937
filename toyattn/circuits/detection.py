"""Find previous-token and induction heads in any hooked model by their attention on repeated random tokens.

Taught in lesson 5 (``notebooks/05_induction_circuits``). The scores follow Olsson et al., "In-context
Learning and Induction Heads" (2022) and ARENA 3.0 chapter 1.2 (see ``docs/references.md``):
on a random sequence of ``L`` tokens repeated twice, an **induction head** at position ``t`` of the
second half attends to ``t - L + 1`` (the token after the previous occurrence of the current
token); a **previous-token head** attends to ``t - 1``. Each score is that attention weight averaged
over positions and sequences, in ``[0, 1]``.

Works on every model with the course's hook points (``blocks.{l}.attn.hook_pattern``): the toy
:class:`~toyattn.models.transformer.Transformer` and :class:`~toyattn.models.llama.Llama`.
The heads' circuits are read by :mod:`toyattn.circuits.head_circuits`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from toyattn.circuits.head_circuits import token_matrices
from toyattn.heads.weights import HeadWeights

__all__ = [
    "copying_scores",
    "repeated_random_tokens",
    "head_scores",
    "top_heads",
]


def repeated_random_tokens(
    n_seq: int,
    length: int,
    vocab: tuple[int, int],
    generator: torch.Generator,
    prefix: int | None = None,
    distinct: bool = False,
) -> torch.Tensor:
    """``[n_seq, 2 * length]`` (``+1`` with a ``prefix`` token first): uniform tokens from ``range(*vocab)``, repeated once.

    ``distinct=True`` draws the first half without replacement (``length`` different tokens; the
    second half is its copy), so every token of the second half has exactly one earlier occurrence and one successor to copy. With
    replacement and a small vocabulary, a token that occurs twice in the first half has two
    candidate successors, and copying cannot say which comes next.
    """
    lo, hi = vocab
    if not 0 <= lo < hi or length < 2:
        raise ValueError(f"Need a token range 0 <= lo < hi and length >= 2, got vocab={vocab}, length={length}.")
    if distinct and length > hi - lo:
        raise ValueError(f"distinct=True needs length <= the number of token ids ({hi - lo}), got length={length}.")
    if distinct:
        half = lo + torch.rand(n_seq, hi - lo, generator=generator).argsort(dim=1)[:, :length]
    else:
        half = torch.randint(lo, hi, (n_seq, length), generator=generator)
    tokens = torch.cat([half, half], dim=1)
    if prefix is not None:
        tokens = torch.cat([torch.full((n_seq, 1), prefix, dtype=tokens.dtype), tokens], dim=1)
    return tokens


@torch.no_grad()
def head_scores(model: Any, tokens: torch.Tensor, length: int, per_sequence: bool = False) -> dict[str, np.ndarray]:
    """``{"previous_token": [n_layers, n_heads], "induction": [n_layers, n_heads]}`` on repeated tokens.

    ``tokens`` end with two copies of ``length`` tokens (as :func:`repeated_random_tokens` makes
    them, optionally after a prefix). Both scores average over the queries of the second copy (each
    has an earlier occurrence of its token, ``length`` positions back). The induction score is also
    called the prefix-matching score (lesson 6). ``per_sequence=True`` keeps the batch axis:
    ``[batch, n_layers, n_heads]``. The model may be on any device; the scores come back as NumPy arrays.
    """
    T = tokens.shape[1]
    if T < 2 * length:
        raise ValueError(f"tokens have {T} positions, fewer than two copies of length={length}.")
    names = [f"blocks.{i}.attn.hook_pattern" for i in range(len(model.blocks))]
    _, cache = model.run_with_cache(tokens, names_filter=names)
    q = torch.arange(T - length, T, device=tokens.device)
    prev = torch.stack([cache[n][:, :, q, q - 1].mean(dim=2) for n in names], dim=1)  # [batch, layer, head]
    ind = torch.stack([cache[n][:, :, q, q - length + 1].mean(dim=2) for n in names], dim=1)
    if not per_sequence:
        prev, ind = prev.mean(0), ind.mean(0)
    return {"previous_token": prev.cpu().numpy(), "induction": ind.cpu().numpy()}


def copying_scores(model: Any) -> np.ndarray:
    """``[n_layers, n_heads]`` Elhage et al.'s copying score of every head: sum(eigenvalues) / sum(|eigenvalues|) of ``W_E W_ov W_U``.

    The norms' gains are folded in (``ln1`` into the head, ``ln_final`` into ``W_U``). The nonzero
    eigenvalues of ``W_E W_V W_O W_U`` are those of the ``d_head x d_head`` matrix ``W_O (W_U W_E) W_V``,
    so a 49,152-token vocabulary costs no more than a toy's (lesson 6; lesson 5's
    :func:`toyattn.circuits.composition.copying_eigen_score` is the same score of one head, tested equal).
    """
    W_E, W_U = token_matrices(model)
    UE = torch.from_numpy(W_U) @ torch.from_numpy(W_E)  # [d, d], once for every head
    out = np.zeros((model.cfg.n_layers, model.cfg.n_heads))
    for layer in range(model.cfg.n_layers):
        heads = HeadWeights.from_model(model, layer, fold_norm=True)
        for head in range(model.cfg.n_heads):
            one = heads.head(head)
            eig = torch.linalg.eigvals(one.W_O[0] @ UE @ one.W_V[0])
            out[layer, head] = float(eig.sum().real / eig.abs().sum())
    return out


def top_heads(scores: np.ndarray, k: int) -> list[tuple[int, int, float]]:
    """The ``k`` highest-scoring heads as ``(layer, head, score)``, best first."""
    flat = np.argsort(scores, axis=None)[::-1][:k]
    return [(int(i // scores.shape[1]), int(i % scores.shape[1]), float(scores.flat[i])) for i in flat]
