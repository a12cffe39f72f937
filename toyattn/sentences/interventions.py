"""Causal experiments on a hooked model: cut one attention edge, or patch an activation across runs.

Taught in lesson 1 (``notebooks/01_attention_toy``, "a causal test"). Built on
:mod:`toyattn.hooks`: each intervention is a temporary hook that is removed afterwards, even if
something raises, so the model is never left edited.

Reading an attention pattern shows *where* a head looks; these functions test whether what it
reads there *causes* the prediction:

* :func:`ablate_edge` removes one query->key edge (e.g. "the" reading "man") and returns the
  logits without it;
* :func:`patch_activation` runs the model on one sentence with an activation copied from another
  sentence's run (e.g. the value vector of "man" put into the "woman" run);
* :func:`patch_positions` does the same at positions that differ from sequence to sequence (a
  ``[batch, pos]`` mask), e.g. only the first copy of a repeated pattern (lesson 5);
* :func:`patch_edge` replaces exactly what one query reads from one key (weight times value) with
  what it read in the other sentence.

The hook names and shapes are those of :class:`toyattn.models.one_head.OneHeadAttention`:
``hook_attn_scores`` / ``hook_pattern`` ``[batch, q_pos, k_pos]``, ``hook_v`` / ``hook_z``
``[batch, pos, d_v]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch

from toyattn.hooks import HookedModule, HookPoint


def _check_pos(name: str, value: int, n_pos: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int position, got {type(value).__name__}.")
    if not -n_pos <= value < n_pos:
        raise ValueError(f"{name}={value} is outside the sequence (positions 0 to {n_pos - 1}).")
    return value % n_pos


def ablate_edge(
    model: HookedModule,
    tokens: torch.Tensor,
    query_pos: int,
    key_pos: int,
    *,
    mode: Literal["zero", "mask"] = "zero",
) -> torch.Tensor:
    """Logits with the attention edge ``query_pos -> key_pos`` removed, in every sentence of the batch.

    Args:
        tokens: ``[batch, pos]`` token ids.
        query_pos, key_pos: the edge (e.g. 3 and 1: "the" reading "man"/"woman"). ``key_pos`` must
            not be in the future of ``query_pos`` (that edge is already masked).
        mode: ``"zero"`` (default) sets the edge's weight to 0 after the softmax and leaves the
            other weights as they were: the query simply stops reading that key (its row then
            sums to less than 1). ``"mask"`` sets the edge's score to ``-inf`` before the softmax,
            so the weight is handed to the other keys (as if that token were invisible), which
            can make the query read something else instead.

    Returns:
        Logits ``[batch, pos, vocab]`` (no gradient).
    """
    q, k = _check_edge(query_pos, key_pos, tokens.shape[-1], mode)
    if mode == "mask":

        def cut(scores: torch.Tensor, *, hook: HookPoint) -> torch.Tensor:
            scores = scores.clone()
            scores[..., q, k] = float("-inf")
            return scores

        hook_name = "hook_attn_scores"
    else:  # "zero"

        def cut(pattern: torch.Tensor, *, hook: HookPoint) -> torch.Tensor:
            pattern = pattern.clone()
            pattern[..., q, k] = 0.0
            return pattern

        hook_name = "hook_pattern"
    with torch.no_grad():
        return model.run_with_hooks(tokens, fwd_hooks=[(hook_name, cut)])


def _check_edge(query_pos: int, key_pos: int, n_pos: int, mode: str) -> tuple[int, int]:
    """The edge as two valid positions for ``mode``, or a ValueError saying why it cannot be cut."""
    q = _check_pos("query_pos", query_pos, n_pos)
    k = _check_pos("key_pos", key_pos, n_pos)
    if k > q:
        raise ValueError(f"key_pos={k} is after query_pos={q}: the causal mask already removes that edge.")
    if mode not in ("mask", "zero"):
        raise ValueError(f"mode must be 'mask' or 'zero', got {mode!r}.")
    if mode == "mask" and k == q == 0:
        raise ValueError("Position 0 can only attend to itself; masking that edge leaves it nothing to read.")
    return q, k


def patch_activation(
    model: HookedModule,
    tokens: torch.Tensor,
    source_tokens: torch.Tensor,
    hook_name: str,
    positions: int | Sequence[int] | None = None,
) -> torch.Tensor:
    """Run ``tokens`` with ``hook_name``'s activation (at ``positions``) copied from a run on ``source_tokens``.

    Args:
        tokens: ``[batch, pos]`` ids of the run to edit (e.g. the "woman" sentence).
        source_tokens: ``[batch, pos]`` ids of the run to copy from (e.g. the "man" sentence);
            same shape as ``tokens``.
        hook_name: which activation, e.g. ``"hook_v"`` (the activation's axis 1 must be positions).
        positions: which positions to copy (axis 1 of the activation); ``None`` copies all.

    Returns:
        Logits ``[batch, pos, vocab]`` of the patched run (no gradient).

    Example (lesson 1): ``patch_activation(model, woman, man, "hook_v", positions=1)`` gives
    every later position the value vector of "man" where the "woman" run had its own.
    """
    _check_same_shape(tokens, source_tokens)
    _, cache = model.run_with_cache(source_tokens, names_filter=hook_name)
    source = cache[hook_name]
    if positions is None:
        index: slice | list[int] = slice(None)
    else:
        pos_list = [positions] if isinstance(positions, int) else list(positions)
        index = [_check_pos("positions", p, tokens.shape[-1]) for p in pos_list]

    def patch(act: torch.Tensor, *, hook: HookPoint) -> torch.Tensor:
        act = act.clone()
        act[:, index] = source[:, index].to(act.device)
        return act

    with torch.no_grad():
        return model.run_with_hooks(tokens, fwd_hooks=[(hook_name, patch)])


def patch_positions(
    model: HookedModule,
    tokens: torch.Tensor,
    source_tokens: torch.Tensor,
    hook_name: str,
    where: torch.Tensor,
) -> torch.Tensor:
    """Run ``tokens`` with ``hook_name``'s activation copied from a run on ``source_tokens`` where ``where`` is True.

    Like :func:`patch_activation`, but the patched positions may differ between sequences:
    ``where [batch, pos]`` (bool) says, for each sequence, which positions (axis 1 of the
    activation) get the source run's value; all others keep this run's. Lesson 5 patches the
    first copy of a pattern (the keys the induction head reads) and the second copy (its
    queries) separately this way.

    Returns:
        Logits ``[batch, pos, vocab]`` of the patched run (no gradient).
    """
    _check_same_shape(tokens, source_tokens)
    if where.dtype != torch.bool or where.shape != tokens.shape:
        raise ValueError(f"where must be a bool mask shaped like tokens {tuple(tokens.shape)}, got "
                         f"{where.dtype} {tuple(where.shape)}.")
    _, cache = model.run_with_cache(source_tokens, names_filter=hook_name)
    source = cache[hook_name]

    def patch(act: torch.Tensor, *, hook: HookPoint) -> torch.Tensor:
        mask = where.to(act.device).reshape(*where.shape, *([1] * (act.dim() - 2)))
        return torch.where(mask, source.to(act), act)

    with torch.no_grad():
        return model.run_with_hooks(tokens, fwd_hooks=[(hook_name, patch)])


def edge_contribution(cache: dict[str, torch.Tensor], query_pos: int, key_pos: int) -> torch.Tensor:
    """What query ``query_pos`` reads from key ``key_pos``: ``pattern[q, k] * v[k]``, ``[batch, d_v]``.

    ``cache`` comes from ``model.run_with_cache(tokens)`` and needs ``hook_pattern`` and ``hook_v``.
    The head's output at ``query_pos`` is the sum of these over all keys.
    """
    missing = [n for n in ("hook_pattern", "hook_v") if n not in cache]
    if missing:
        raise KeyError(f"The cache lacks {missing}; run model.run_with_cache(tokens) without a names_filter.")
    return cache["hook_pattern"][:, query_pos, key_pos, None] * cache["hook_v"][:, key_pos]


def patch_edge(
    model: HookedModule,
    tokens: torch.Tensor,
    source_tokens: torch.Tensor,
    query_pos: int,
    key_pos: int,
) -> torch.Tensor:
    """Run ``tokens`` with what ``query_pos`` reads from ``key_pos`` taken from the ``source_tokens`` run.

    Only one term of the head's output changes: at ``query_pos``, ``z`` loses this run's
    ``pattern[q, k] * v[k]`` and gains the source run's. Everything else (other positions, other
    keys) stays as it was, so a changed prediction is caused by that one edge.

    Returns:
        Logits ``[batch, pos, vocab]`` of the patched run (no gradient).
    """
    _check_same_shape(tokens, source_tokens)
    n_pos = tokens.shape[-1]
    q = _check_pos("query_pos", query_pos, n_pos)
    k = _check_pos("key_pos", key_pos, n_pos)
    if k > q:
        raise ValueError(f"key_pos={k} is after query_pos={q}: the causal mask gives that edge no weight.")
    names = ["hook_pattern", "hook_v"]
    _, own = model.run_with_cache(tokens, names_filter=names)
    _, source = model.run_with_cache(source_tokens, names_filter=names)
    delta = edge_contribution(source, q, k) - edge_contribution(own, q, k)  # [batch, d_v]

    def patch(z: torch.Tensor, *, hook: HookPoint) -> torch.Tensor:
        z = z.clone()
        z[:, q] += delta.to(z.device)
        return z

    with torch.no_grad():
        return model.run_with_hooks(tokens, fwd_hooks=[("hook_z", patch)])


def _check_same_shape(tokens: torch.Tensor, source_tokens: torch.Tensor) -> None:
    """A patch lines positions up one to one: both runs must have the same ``[batch, pos]``."""
    if tokens.shape != source_tokens.shape:
        raise ValueError(
            f"tokens and source_tokens must have the same shape to line positions up, got "
            f"{tuple(tokens.shape)} and {tuple(source_tokens.shape)}."
        )
