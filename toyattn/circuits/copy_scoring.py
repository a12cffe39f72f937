"""Scoring a model on lesson 4's copy task: accuracy and loss on the second copy, and where each copy sits.

Lesson 4 (``notebooks/04_qk_ov_matching``) trains on the task and reports its error
(:func:`toyattn.circuits.copy_task.copy_error`, one minus :func:`copy_accuracy`); lesson 5
(``notebooks/05_induction_circuits``) ablates and patches heads and measures :func:`copy_accuracy` and
:func:`copy_loss` on the same positions, with the corrupted inputs built here.
"""

from __future__ import annotations

from typing import Literal

import torch

from toyattn.circuits.copy_task import CopyBatch, count_right

__all__ = ["copy_accuracy", "copy_loss", "copy_positions", "corrupt_first_copy", "offset_parity_mask"]


def copy_accuracy(logits: torch.Tensor, batch: CopyBatch, targets: torch.Tensor | None = None) -> float:
    """Share of the scored second-copy tokens predicted right (argmax) from ``logits [batch, pos, vocab]``.

    ``logits`` come from a run on ``batch.tokens`` (all positions); position ``j`` is predicted at
    ``j - 1``. ``targets [batch, pos]`` (bool) scores a subset of the scored tokens instead.
    """
    _check_logits(logits, batch)
    mask = batch.scored if targets is None else targets & batch.scored
    right, scored = count_right(logits[:, :-1], batch.tokens, mask)
    return right / max(scored, 1)


def _check_logits(logits: torch.Tensor, batch: CopyBatch) -> None:
    if logits.shape[:2] != batch.tokens.shape:
        raise ValueError(f"logits {tuple(logits.shape)} must be [batch, pos, vocab] for tokens {tuple(batch.tokens.shape)}.")


def copy_loss(logits: torch.Tensor, batch: CopyBatch, targets: torch.Tensor | None = None) -> float:
    """Mean cross-entropy (nats) of the scored second-copy tokens under ``logits [batch, pos, vocab]``.

    The continuous companion of :func:`copy_accuracy` (same positions, same ``targets`` option): it
    also moves when the right token gains or loses probability without changing the argmax.
    """
    _check_logits(logits, batch)
    mask = (batch.scored if targets is None else targets & batch.scored)[:, 1:].to(logits.device)
    logp = torch.log_softmax(logits.detach()[:, :-1].double(), -1).gather(-1, batch.tokens[:, 1:, None].to(logits.device))[..., 0]
    return float(-(logp * mask).sum() / mask.sum().clamp(min=1))


def copy_positions(batch: CopyBatch, which: Literal["first", "second"]) -> torch.Tensor:
    """``[batch, pos]`` bool: the positions of the pattern's first or second copy in each sequence."""
    if which not in ("first", "second"):
        raise ValueError(f"which must be 'first' or 'second', got {which!r}.")
    start = batch.first if which == "first" else batch.second
    offset = torch.arange(batch.tokens.shape[1])[None, :] - start[:, None]
    return (offset >= 0) & (offset < batch.length[:, None])


def corrupt_first_copy(batch: CopyBatch, vocab_size: int, generator: torch.Generator, parity: int = 1) -> torch.Tensor:
    """Tokens with the first copy's tokens at offsets of the given parity replaced by tokens outside the pattern.

    With ``parity=1`` (offsets 1, 3, 5, ...) the second copy's target at an **even** offset ``j`` has a
    first-copy twin whose *previous* token was replaced: the previous-token head can no longer tell
    L1H0 where to look. A target at an **odd** offset has a twin whose *own* token was replaced:
    L1H0 would look in the right place and copy the wrong token. Patching the previous-token
    head's clean output back can mend the first kind and not the second: a built-in control.
    """
    tokens = batch.tokens.clone()
    for i in range(len(batch)):
        f, n = int(batch.first[i]), int(batch.length[i])
        pattern = set(tokens[i, f : f + n].tolist())
        others = torch.tensor([t for t in range(vocab_size) if t not in pattern])
        for j in range(parity, n, 2):
            tokens[i, f + j] = others[torch.randint(len(others), (1,), generator=generator)]
    return tokens


def offset_parity_mask(batch: CopyBatch, parity: int) -> torch.Tensor:
    """``[batch, pos]`` bool: second-copy positions whose offset in the copy has the given parity."""
    pos = torch.arange(batch.tokens.shape[1])[None, :]
    offset = pos - batch.second[:, None]
    inside = (offset >= 0) & (offset < batch.length[:, None])
    return inside & (offset % 2 == parity)

