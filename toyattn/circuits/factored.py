"""A circuit kept as two thin factors instead of one wide matrix, and its singular directions from a small SVD.

Lessons 5 and 6 read the circuits of SmolLM2, whose residual stream is 576 wide while a head is 64:
a head's QK or OV circuit is a ``576 x 576`` matrix of rank 64 at most. Kept as its two factors, its
singular directions and its composition scores cost ``64 x 64`` products (tested against the full
matrices in ``tests/test_circuits_head_circuits.py`` and ``tests/test_circuits_composition.py``).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

__all__ = ["Factored", "right_directions"]


class Factored(NamedTuple):
    """A ``[d_model, d_model]`` circuit kept as two factors ``[d_model, k]``: the matrix ``left @ right.T``.

    A head's QK circuit is ``Factored(W_Q R / sqrt(d_head), W_K)`` and its OV circuit
    ``Factored(W_V, W_O^T)`` (:mod:`toyattn.circuits.head_circuits`): rank ``d_head`` at most, so its
    singular vectors cost a ``d_head x d_head`` SVD instead of a ``d_model x d_model`` one (lesson 5's
    576-wide SmolLM2). :func:`toyattn.circuits.matching.qk_ov_matching` and the composition scores of
    :mod:`toyattn.circuits.composition`
    accept it wherever they accept a matrix, and give the same number (tested).
    """

    left: np.ndarray
    right: np.ndarray

    def matrix(self) -> np.ndarray:
        return self.left @ self.right.T

    @property
    def T(self) -> Factored:  # noqa: N802 - the transpose, as NumPy spells it
        return Factored(self.right, self.left)


def right_directions(M: np.ndarray | Factored) -> np.ndarray:
    """Right singular vectors of a circuit, largest first, as columns ``[d_model, k]``."""
    if not isinstance(M, Factored):
        return np.linalg.svd(M)[2].T
    # left @ right.T = Ql (Rl Rr^T) Qr^T with orthonormal Ql, Qr: its right singular vectors are Qr times
    # those of the small k x k core. Computed with torch, so it follows torch.set_num_threads.
    _, Rl = torch.linalg.qr(torch.from_numpy(np.asarray(M.left, dtype=np.float64)))
    Qr, Rr = torch.linalg.qr(torch.from_numpy(np.asarray(M.right, dtype=np.float64)))
    _, _, Vh = torch.linalg.svd(Rl @ Rr.T)
    return (Qr @ Vh.T).numpy()
