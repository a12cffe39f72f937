"""The course's one permutation convention for attention heads, and its algebra (lesson 2).

Taught in ``notebooks/02_head_permutation`` (section 2, "Permuting heads: one convention") and
practised in ``solutions/02_head_permutation`` (exercises 1 and 2). :mod:`toyattn.heads.fused_qkv` and
:class:`toyattn.heads.weights.HeadWeights` permute heads with it; :mod:`toyattn.heads.matching` recovers it.

**The permutation convention** (one, everywhere): a permutation is a 1-D integer tensor ``perm`` of
length ``n_heads`` holding each of ``0 .. n_heads-1`` once, and applying it means

    new head i = old head perm[i]          (a gather: ``heads[perm]``)

So ``recover_permutation(ref, permute(ref, perm)) == perm``, applying ``perm`` and then
``invert_permutation(perm)`` gives the original back, and applying ``p1`` then ``p2`` equals applying
``compose_permutations(p1, p2) == p1[p2]`` once.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = [
    "as_permutation",
    "compose_permutations",
    "invert_permutation",
    "random_permutation",
    "recovery_accuracy",
]


def as_permutation(perm: torch.Tensor | np.ndarray | list[int] | tuple[int, ...], n_heads: int) -> torch.Tensor:
    """Validate ``perm`` as a permutation of ``n_heads`` heads and return it as a CPU ``int64`` tensor.

    Taught in lesson 2. Raises ``TypeError`` for a float (or bool) dtype and ``ValueError`` for a wrong
    length, a repeated head, or a head index out of range; each message says how to fix it.
    """
    if isinstance(perm, torch.Tensor):
        t = perm.detach().cpu()
    else:
        arr = np.asarray(perm)
        if arr.dtype == object:
            raise TypeError(f"perm must be a list or tensor of integers, got {perm!r}.")
        t = torch.from_numpy(arr.copy()) if arr.size else torch.empty(0, dtype=torch.long)
    if t.dtype == torch.bool or t.is_floating_point() or t.is_complex():
        raise TypeError(
            f"perm must hold integer head indices, got dtype {t.dtype}. "
            f"Use e.g. torch.randperm({n_heads}) or torch.tensor([...], dtype=torch.long); "
            f"a float permutation usually means it was built with torch.tensor of floats or argsort of noise."
        )
    if t.dim() != 1:
        raise ValueError(f"perm must be 1-D (one entry per head), got shape {tuple(t.shape)}.")
    if len(t) != n_heads:
        raise ValueError(
            f"perm has {len(t)} entries but the layer has n_heads={n_heads}: "
            f"give exactly one entry per head (a permutation of 0..{n_heads - 1})."
        )
    t = t.long()
    out_of_range = (t < 0) | (t >= n_heads)
    if out_of_range.any():
        bad = int(t[out_of_range][0])
        raise ValueError(f"perm contains {bad}, outside the head range 0..{n_heads - 1}.")
    counts = torch.bincount(t, minlength=n_heads)
    if (counts != 1).any():
        repeated = torch.nonzero(counts > 1).flatten().tolist()
        missing = torch.nonzero(counts == 0).flatten().tolist()
        raise ValueError(
            f"perm is not a permutation: head(s) {repeated} appear more than once and {missing} never. "
            f"Each of 0..{n_heads - 1} must appear exactly once."
        )
    return t


def random_permutation(n_heads: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """A uniformly random permutation of ``n_heads`` heads, ``int64`` on the CPU (lesson 2)."""
    return torch.randperm(n_heads, generator=generator)


def invert_permutation(perm: torch.Tensor) -> torch.Tensor:
    """The permutation that undoes ``perm``: ``inv[perm[i]] = i`` (lesson 2).

    Applying ``perm`` and then ``inv`` (or the other way round) leaves the heads where they were.
    """
    p = as_permutation(perm, len(perm))
    inv = torch.empty_like(p)
    inv[p] = torch.arange(len(p))
    return inv


def compose_permutations(first: torch.Tensor, then: torch.Tensor) -> torch.Tensor:
    """One permutation equal to applying ``first`` and then ``then`` (lesson 2).

    With "new head i = old head perm[i]", two steps give head ``first[then[i]]``, so the result is
    ``first[then]``.
    """
    p1 = as_permutation(first, len(first))
    p2 = as_permutation(then, len(p1))
    return p1[p2]


def recovery_accuracy(found: torch.Tensor, true: torch.Tensor) -> float:
    """Fraction of heads a recovered permutation puts in the right place (lesson 2)."""
    f = as_permutation(found, len(found))
    t = as_permutation(true, len(f))
    return float((f == t).float().mean())
