"""The standard circuit tools for two attention layers: composition scores, the full OV circuit, copying and positional QK.

Taught in lesson 5 (``notebooks/05_induction_circuits``), next to lesson 4's principal-angle
matching (:mod:`toyattn.circuits.matching`); lesson 6 (``notebooks/06_real_model_induction``) scores
every pair of a real model's heads with them (:func:`composition_scores`). Conventions are the course's row vectors (TransformerLens,
ARENA): a head's QK circuit is ``W_qk = W_Q R W_K^T / sqrt(d_head)`` (score ``x_q W_qk x_k^T``) and
its OV circuit ``W_ov = W_V W_O`` (a source residual ``x`` writes ``x W_ov``).

Sources (see ``docs/references.md``): Elhage et al., "A Mathematical Framework for Transformer
Circuits" (2021): composition scores and the eigenvalue copying score; ARENA 3.0 chapter 1.2: the
same scores in this convention, the random baseline and the top-1 copying test.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from toyattn.arrays import as_matrix
from toyattn.circuits.factored import Factored
from toyattn.circuits.head_circuits import head_factors, ov_factors, qk_factors
from toyattn.circuits.matching import rotary_matrix
from toyattn.heads.weights import HeadWeights

__all__ = [
    "composition_score",
    "k_composition",
    "q_composition",
    "v_composition",
    "random_composition_baseline",
    "full_ov_circuit",
    "copying_eigen_score",
    "copying_top1",
    "positional_qk_scores",
    "KINDS",
    "composition_scores",
    "random_pair_composition",
]


def composition_score(A: Any, B: Any) -> float:
    """``||A B||_F / (||A||_F ||B||_F)``, in ``[0, 1]``: how much of what ``A`` writes ``B`` reads (Elhage et al.).

    ``A`` and ``B`` are matrices, or both :class:`~toyattn.circuits.factored.Factored` circuits (lesson 6's
    real model): the same number from ``d_head x d_head`` products (tested against the full matrices).
    """
    if isinstance(A, Factored) and isinstance(B, Factored):
        return _factored_score(A, B)
    A = A.matrix() if isinstance(A, Factored) else A
    B = B.matrix() if isinstance(B, Factored) else B
    A, B = as_matrix(A, "A"), as_matrix(B, "B")
    if A.shape[1] != B.shape[0]:
        raise ValueError(f"A {A.shape} and B {B.shape} do not chain (A's columns must match B's rows).")
    denom = np.linalg.norm(A) * np.linalg.norm(B)
    if denom == 0:
        raise ValueError("A or B is all zeros: a composition score needs two non-zero matrices.")
    return float(np.linalg.norm(A @ B) / denom)


def _factored_score(A: Factored, B: Factored) -> float:
    """:func:`composition_score` of ``A = a_l a_r^T`` and ``B = b_l b_r^T`` without forming either.

    ``A B = a_l (a_r^T b_l) b_r^T``, and ``||X Y^T||_F^2 = tr(X^T X Y^T Y)``: every product is ``d_head x d_head``.
    """
    a_l, a_r, b_l, b_r = (as_matrix(X, "factor") for X in (A.left, A.right, B.left, B.right))
    gram = lambda X: X.T @ X  # noqa: E731
    M = a_r.T @ b_l
    num = np.trace(gram(a_l) @ M @ gram(b_r) @ M.T)
    n_a, n_b = np.trace(gram(a_l) @ gram(a_r)), np.trace(gram(b_l) @ gram(b_r))
    if n_a * n_b == 0:
        raise ValueError("a circuit is all zeros: a composition score needs two non-zero circuits.")
    return float(math.sqrt(max(num, 0.0) / (n_a * n_b)))


def _transposed(W: Any) -> Any:
    return W.T if isinstance(W, Factored) else as_matrix(W, "W").T


def k_composition(W_ov_writer: Any, W_qk_reader: Any) -> float:
    """K-composition: the reader's *key* side reads what the writer's OV writes: ``comp(W_ov^1, W_qk^2^T)``."""
    return composition_score(W_ov_writer, _transposed(W_qk_reader))


def q_composition(W_ov_writer: Any, W_qk_reader: Any) -> float:
    """Q-composition: the reader's *query* side reads what the writer writes: ``comp(W_ov^1, W_qk^2)``."""
    return composition_score(W_ov_writer, W_qk_reader)


def v_composition(W_ov_writer: Any, W_ov_reader: Any) -> float:
    """V-composition: the reader's values read what the writer writes: ``comp(W_ov^1, W_ov^2)``."""
    return composition_score(W_ov_writer, W_ov_reader)


def random_composition_baseline(
    d_model: int, d_head: int, n_runs: int = 200, seed: int = 0
) -> tuple[float, float]:
    """``(mean, std)`` of the composition score of two unrelated heads' circuits.

    Each circuit is a product of Gaussian factors ``[d_model, d_head] @ [d_head, d_model]``: the same
    shapes and rank as a real head's ``W_ov`` or ``W_qk`` (as ARENA's baseline). Random circuits do
    not score 0: a trained score means something only well above this mean.
    """
    if d_head < 1 or d_model < d_head:
        raise ValueError(f"Need 1 <= d_head <= d_model, got d_model={d_model}, d_head={d_head}.")
    rng = np.random.default_rng(seed)
    draw = lambda: rng.standard_normal((d_model, d_head)) @ rng.standard_normal((d_head, d_model))  # noqa: E731
    scores = [composition_score(draw(), draw().T) for _ in range(n_runs)]
    return float(np.mean(scores)), float(np.std(scores))


def full_ov_circuit(W_E: Any, W_ov: Any, W_U: Any) -> np.ndarray:
    """``W_E W_ov W_U`` ``[vocab, vocab]``: entry ``[a, b]`` is how much attending to token ``a`` raises the logit of ``b``."""
    W_E, W_ov, W_U = as_matrix(W_E, "W_E"), as_matrix(W_ov, "W_ov"), as_matrix(W_U, "W_U")
    if not W_E.shape[1] == W_ov.shape[0] == W_ov.shape[1] == W_U.shape[0]:
        raise ValueError(f"Shapes do not chain: W_E {W_E.shape}, W_ov {W_ov.shape}, W_U {W_U.shape} (need [V,d],[d,d],[d,V]).")
    return W_E @ W_ov @ W_U


def copying_eigen_score(W_E: Any, W_ov: Any, W_U: Any) -> float:
    """Elhage et al.'s copying summary of ``W_E W_ov W_U``: ``sum(eigenvalues) / sum(|eigenvalues|)``, in ``[-1, 1]``.

    Near 1: the head raises the logit of the token it attends to (copying); near -1: it lowers it.
    The nonzero eigenvalues of ``W_E (W_ov W_U)`` are those of ``(W_ov W_U) W_E`` (``[d_model, d_model]``),
    so a 49,152-token vocabulary costs no more than a 24-token one.
    """
    W_E, W_ov, W_U = as_matrix(W_E, "W_E"), as_matrix(W_ov, "W_ov"), as_matrix(W_U, "W_U")
    full_ov_circuit(W_E[:1], W_ov, W_U[:, :1])  # shape check only
    eig = np.linalg.eigvals(W_ov @ W_U @ W_E)
    return float(eig.sum().real / np.abs(eig).sum())


def copying_top1(full_ov: Any) -> float:
    """ARENA's simpler copying test: share of source tokens ``a`` whose own logit is the largest in row ``a``."""
    F = as_matrix(full_ov, "full_ov")
    if F.shape[0] != F.shape[1]:
        raise ValueError(f"The full OV circuit is [vocab, vocab]; got shape {F.shape}.")
    return float(np.mean(F.argmax(axis=1) == np.arange(F.shape[0])))


def positional_qk_scores(
    query: Any, key: Any, W_Q: Any, W_K: Any, distances: Any, base: float = 10000.0
) -> np.ndarray:
    """Attention score of a typical query on a typical key at each query-key distance (rotary models).

    ``query``, ``key``: ``[d_model]`` the average input each side reads (e.g. the mean over tokens
    of the layer-normed embeddings), or ``[d_head]`` already-projected vectors if ``W_Q``/``W_K`` are
    None. With rotary positions the score of two fixed vectors depends only on the distance
    ``delta``: ``(query W_Q) R(delta) (key W_K)^T / sqrt(d_head)``. Averaging over independently drawn
    query and key tokens gives exactly this of the mean inputs (the score is bilinear).
    """
    q, k = np.asarray(query, dtype=np.float64), np.asarray(key, dtype=np.float64)
    if W_Q is not None:
        q, k = q @ as_matrix(W_Q, "W_Q"), k @ as_matrix(W_K, "W_K")
    if q.shape != k.shape or q.ndim != 1:
        raise ValueError(f"query and key must give two [d_head] vectors, got {q.shape} and {k.shape}.")
    d_head = q.shape[0]
    return np.array([q @ rotary_matrix(d_head, int(d), base) @ k / math.sqrt(d_head) for d in distances])


# ---------------------------------------------------------------------------------------------
# Every pair of a model's heads (lesson 6)
# ---------------------------------------------------------------------------------------------

#: The three ways a later head can read an earlier one's output (Elhage et al.).
KINDS = ("Q", "K", "V")
_SCORES = {"Q": q_composition, "K": k_composition, "V": v_composition}


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS} (Q-, K- or V-composition), got {kind!r}.")


def _pair_score(writer: HeadWeights, reader: HeadWeights, kind: str) -> float:
    read = ov_factors(reader) if kind == "V" else qk_factors(reader)
    return _SCORES[kind](ov_factors(writer), read)


def composition_scores(model: Any, heads: list[tuple[int, int]], kind: str) -> np.ndarray:
    """``[len(heads), len(heads)]``: entry ``[i, j]`` is the ``kind``-composition of writer ``heads[i]`` into reader ``heads[j]``.

    NaN where the writer is not in an earlier layer than the reader (it cannot compose). Norm gains folded
    in (:func:`~toyattn.circuits.head_circuits.head_factors`), query-key distance 0 (Elhage et al.; ARENA 1.2).
    """
    _check_kind(kind)
    factors = {h: head_factors(model, *h) for h in heads}
    out = np.full((len(heads), len(heads)), np.nan)
    for i, w in enumerate(heads):
        for j, r in enumerate(heads):
            if w[0] < r[0]:
                out[i, j] = _pair_score(factors[w], factors[r], kind)
    return out


def random_pair_composition(model: Any, kind: str, n_pairs: int = 200, seed: int = 0) -> np.ndarray:
    """``[n_pairs]`` ``kind``-composition of random head pairs of the model (writer in an earlier layer): the baseline."""
    _check_kind(kind)
    rng = np.random.default_rng(seed)
    n, n_heads = model.cfg.n_layers, model.cfg.n_heads
    out = []
    for _ in range(n_pairs):
        lw, lr = sorted(int(x) for x in rng.choice(n, 2, replace=False))
        writer = head_factors(model, lw, int(rng.integers(n_heads)))
        reader = head_factors(model, lr, int(rng.integers(n_heads)))
        out.append(_pair_score(writer, reader, kind))
    return np.array(out)
