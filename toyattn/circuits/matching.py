"""Reading an induction circuit straight from the weights: QK and OV circuits and how they match.

Taught in lesson 4 (``notebooks/04_qk_ov_matching``). Every function takes weight matrices (torch
tensors on any device, or numpy arrays) and returns numpy arrays or floats; none needs data.

Conventions (TransformerLens, row vectors, as in :mod:`toyattn.models.transformer`):

* ``W_Q, W_K, W_V [d_model, d_head]``, ``W_O [d_head, d_model]`` for one head.
* QK circuit ``W_qk = W_Q R W_K^T / sqrt(d_head)`` ``[d_model, d_model]``: the attention score of a
  query on a key is ``x_q @ W_qk @ x_k`` plus bias terms, where ``x_q``, ``x_k`` are the *layer-normed*
  residuals the attention reads (pre-LayerNorm blocks), not the residual stream itself; ``R`` the
  rotary matrix at the query-key distance (identity at distance 0).
* OV circuit ``W_ov = W_V @ W_O`` ``[d_model, d_model]``: a source with layer-normed residual ``x``
  writes ``x @ W_ov`` (plus a bias).
* Composition ``W_qkov = W_qk @ W_ov_L0H0^T``: the score of an L1H0 query ``x_q`` on a key that
  L0H0 filled with ``x_src @ W_ov`` is ``x_q @ W_qkov @ x_src``.

Song, Xu & Zhong (arXiv 2408.09503) write column vectors (``nn.Linear`` weights ``[out, in]``): their
``W_qk = W_q^T W_k / sqrt(d)`` (no rotary matrix: distance 0) is ours at distance 0, their ``W_ov = W_o W_v`` is our ``W_ov`` transposed, so
their *left* singular vectors of ``W_ov`` are our *right* ones. The numbers are the same.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np

from toyattn.arrays import as_matrix
from toyattn.circuits.factored import Factored, right_directions
from toyattn.heads.weights import HeadWeights

Summary = Literal["largest", "rms"]

__all__ = [
    "rotary_matrix",
    "qk_circuit",
    "ov_circuit",
    "qkov_circuit",
    "token_matrix",
    "diagonal_zscore",
    "token_mismatch_ratio",
    "principal_cosines",
    "summarise",
    "subspace_matching",
    "qk_ov_matching",
    "embedding_ov_matching",
    "ov_output_share_in_embedding_span",
    "random_baseline",
    "expected_random_matching",
    "expected_projected_length",
    "first_step_where",
    "estimate_rank",
    "embedding_usage",
    "circuit_metrics",
]


# ---------------------------------------------------------------------------------------------
# Circuits
# ---------------------------------------------------------------------------------------------


def rotary_matrix(d_head: int, distance: int = 0, base: float = 10000.0) -> np.ndarray:
    """The ``[d_head, d_head]`` matrix ``R`` with ``rot(q, p) . rot(k, s) = q @ R @ k`` when ``p - s = distance``.

    Matches :func:`toyattn.models.transformer.apply_rotary` ("rotate half" layout: coordinate ``i``
    pairs with ``i + d_head // 2``). ``R`` is a rotation by ``-distance * frequency_i`` in each pair;
    at distance 0 it is the identity. Lesson 4.
    """
    if d_head % 2 != 0 or d_head < 2:
        raise ValueError(f"Rotary positions need an even d_head >= 2, got {d_head}.")
    half = d_head // 2
    freqs = base ** (-np.arange(half) * 2.0 / d_head)
    angle = -distance * freqs
    cos, sin = np.cos(angle), np.sin(angle)
    R = np.zeros((d_head, d_head))
    idx = np.arange(half)
    R[idx, idx] = cos
    R[idx + half, idx + half] = cos
    R[idx, idx + half] = -sin
    R[idx + half, idx] = sin
    return R


def qk_circuit(W_Q: Any, W_K: Any, distance: int | None = 0, base: float = 10000.0) -> np.ndarray:
    """``W_qk = W_Q R W_K^T / sqrt(d_head)``, ``[d_model, d_model]``; lesson 4.

    Args:
        W_Q, W_K: ``[d_model, d_head]`` of one head.
        distance: query position minus key position for the rotary matrix ``R``; ``None`` for a
            model without rotary positions (``R`` = identity, like distance 0).
    """
    W_Q, W_K = as_matrix(W_Q, "W_Q"), as_matrix(W_K, "W_K")
    if W_Q.shape != W_K.shape:
        raise ValueError(f"W_Q and W_K must have the same shape [d_model, d_head], got {W_Q.shape} and {W_K.shape}.")
    d_head = W_Q.shape[1]
    R = np.eye(d_head) if distance is None or distance == 0 else rotary_matrix(d_head, distance, base)
    return W_Q @ R @ W_K.T / math.sqrt(d_head)


def ov_circuit(W_V: Any, W_O: Any) -> np.ndarray:
    """``W_ov = W_V @ W_O``, ``[d_model, d_model]``: what a head writes for a source residual. Lesson 4."""
    W_V, W_O = as_matrix(W_V, "W_V"), as_matrix(W_O, "W_O")
    if W_V.shape[1] != W_O.shape[0]:
        raise ValueError(
            f"W_V [d_model, d_head] and W_O [d_head, d_model] do not chain: got {W_V.shape} and {W_O.shape}; "
            "did you pass W_O transposed?"
        )
    return W_V @ W_O


def qkov_circuit(W_qk: Any, W_ov: Any) -> np.ndarray:
    """``W_qkov = W_qk @ W_ov^T`` ``[d_model, d_model]``: L1H0's score of query ``x_q`` on a key that
    L0H0 wrote ``x_src @ W_ov`` into is ``x_q @ W_qkov @ x_src``. Lesson 4."""
    W_qk, W_ov = as_matrix(W_qk, "W_qk"), as_matrix(W_ov, "W_ov")
    if W_qk.shape[1] != W_ov.shape[1]:
        raise ValueError(f"W_qk {W_qk.shape} and W_ov {W_ov.shape} must share d_model.")
    return W_qk @ W_ov.T


def token_matrix(W_E: Any, W: Any) -> np.ndarray:
    """``E @ W @ E^T`` ``[vocab, vocab]``: a ``[d_model, d_model]`` circuit read token by token. Lesson 4.

    For ``W = W_qkov``, entry ``[a, b]`` is how much a query on token ``a`` attends to a key whose
    *previous* token was ``b``: an induction head has a large diagonal (it looks for ``b = a``).
    """
    W_E, W = as_matrix(W_E, "W_E"), as_matrix(W, "W")
    if W_E.shape[1] != W.shape[0] or W.shape[0] != W.shape[1]:
        raise ValueError(f"W_E [vocab, d_model] {W_E.shape} and W [d_model, d_model] {W.shape} do not fit.")
    return W_E @ W @ W_E.T


def diagonal_zscore(M: Any) -> float:
    """How far the diagonal of a square ``M`` stands out: ``(mean(diag) - mean(all)) / std(all)``. Lesson 4.

    0 for a matrix whose diagonal is typical, large and positive when the diagonal dominates.
    (The research notebook this lesson grew from, kept outside this repository, took this of the
    ``d_model`` x ``d_model`` matrix, whose diagonal has no meaning
    in an arbitrary basis; the course takes it of the token-level matrix.)
    """
    M = as_matrix(M, "M")
    if M.shape[0] != M.shape[1]:
        raise ValueError(f"diagonal_zscore needs a square matrix, got shape {M.shape}.")
    std = M.std()
    if std == 0:
        return 0.0
    return float((np.diag(M).mean() - M.mean()) / std)


def token_mismatch_ratio(M: Any) -> float:
    """Share of rows whose largest entry is off the diagonal, in ``[0, 1]``; 0 for a perfect induction
    head (every token attends most to keys preceded by the same token). Lesson 4."""
    M = as_matrix(M, "M")
    if M.shape[0] != M.shape[1]:
        raise ValueError(f"token_mismatch_ratio needs a square matrix, got shape {M.shape}.")
    return float(np.mean(M.argmax(axis=1) != np.arange(M.shape[0])))


# ---------------------------------------------------------------------------------------------
# Subspace matching
# ---------------------------------------------------------------------------------------------


def principal_cosines(A: Any, B: Any) -> np.ndarray:
    """Cosines of the principal angles between the column spans of ``A [d, r]`` and ``B [d, r']``.

    Both must have orthonormal columns (e.g. singular vectors). These are the singular values of
    ``A^T B``, largest first, each in ``[0, 1]``: 1 for a shared direction, 0 for orthogonal ones. Lesson 4.
    """
    A, B = as_matrix(A, "A"), as_matrix(B, "B")
    if A.shape[0] != B.shape[0]:
        raise ValueError(f"A and B must live in the same space (same number of rows), got {A.shape} and {B.shape}.")
    for name, X in (("A", A), ("B", B)):
        if not np.allclose(X.T @ X, np.eye(X.shape[1]), atol=1e-6):
            raise ValueError(f"{name} must have orthonormal columns (take singular vectors, or orthonormalise with np.linalg.qr).")
    return np.clip(np.linalg.svd(A.T @ B, compute_uv=False), 0.0, 1.0)


def summarise(cosines: np.ndarray, summary: Summary = "largest") -> float:
    """``"largest"``: the largest cosine (the best-aligned pair of directions); ``"rms"``: root mean
    square of all of them (how much of the subspaces overlap overall). Lesson 4."""
    if summary == "largest":
        return float(cosines[0])
    if summary == "rms":
        return float(np.sqrt(np.mean(np.square(cosines))))
    raise ValueError(f"summary must be 'largest' or 'rms', got {summary!r}.")


def _check_rank(rank: int, d: int) -> None:
    if isinstance(rank, bool) or not isinstance(rank, (int, np.integer)) or not 1 <= rank <= d:
        raise ValueError(f"rank must be an integer in [1, {d}] (the dimension), got {rank!r}.")


def subspace_matching(A_dirs: Any, B_dirs: Any, rank: int, summary: Summary = "largest") -> float:
    """Score in ``[0, 1]`` for how well the first ``rank`` columns of two orthonormal bases align. Lesson 4."""
    A, B = as_matrix(A_dirs, "A_dirs"), as_matrix(B_dirs, "B_dirs")
    _check_rank(rank, min(A.shape[1], B.shape[1]))
    return summarise(principal_cosines(A[:, :rank], B[:, :rank]), summary)


def _as_circuit(M: Any, name: str) -> np.ndarray | Factored:
    if isinstance(M, Factored):
        return Factored(as_matrix(M.left, f"{name}.left"), as_matrix(M.right, f"{name}.right"))
    return as_matrix(M, name)


def qk_ov_matching(W_qk: Any, W_ov: Any, rank: int, summary: Summary = "largest") -> float:
    """Do L1H0's keys read what L0H0's OV writes? Lesson 4.

    Compares the top-``rank`` directions ``W_qk`` reads on the key side (right singular vectors)
    with the top-``rank`` directions ``W_ov`` writes (its right singular vectors, in our row-vector
    convention; the paper's left singular vectors of its transposed ``W_ov``). Either circuit may be
    a :class:`Factored` pair (lesson 5's real model): same number, a ``d_head``-sized SVD.
    """
    W_qk, W_ov = _as_circuit(W_qk, "W_qk"), _as_circuit(W_ov, "W_ov")
    _check_residual_maps(W_qk, W_ov)
    keys, outputs = right_directions(W_qk), right_directions(W_ov)
    _check_rank(rank, min(keys.shape[1], outputs.shape[1]))
    return subspace_matching(keys, outputs, rank, summary)


def _check_residual_maps(W_qk: np.ndarray | Factored, W_ov: np.ndarray | Factored) -> None:
    """Both circuits map the residual stream to itself: square, and of one size."""
    if isinstance(W_qk, Factored) or isinstance(W_ov, Factored):
        sizes = {X.shape[0] for M in (W_qk, W_ov) for X in (M if isinstance(M, Factored) else (M, M.T))}
        if len(sizes) != 1:
            raise ValueError(f"W_qk and W_ov must both act on one residual stream [d_model, ...]; got sizes {sorted(sizes)}.")
        return
    if W_qk.shape[0] != W_qk.shape[1] or W_ov.shape[0] != W_ov.shape[1] or W_qk.shape != W_ov.shape:
        raise ValueError(
            f"W_qk {W_qk.shape} and W_ov {W_ov.shape} must both be [d_model, d_model] (the full circuits, e.g. "
            "W_Q @ W_K.T and W_V @ W_O), not per-head factors such as W_Q alone."
        )


def embedding_ov_matching(W_E: Any, W_ov: Any, rank: int, summary: Summary = "largest", side: str = "output") -> float:
    """Match the top-``rank`` directions the token embeddings span with L0H0's OV circuit. Lesson 4.

    ``side="output"`` (the seed's choice): does L0H0 write the copied token into the embedding's
    own subspace? ``side="input"``: does it read from there?
    """
    W_E, W_ov = as_matrix(W_E, "W_E"), as_matrix(W_ov, "W_ov")
    if side not in ("output", "input"):
        raise ValueError(f"side must be 'output' or 'input', got {side!r}.")
    _check_rank(rank, min(W_E.shape))
    E_dirs = np.linalg.svd(W_E, full_matrices=False)[2].T  # [d_model, min(vocab, d_model)]
    U, _, Vt = np.linalg.svd(W_ov)
    ov_dirs = Vt.T if side == "output" else U
    return subspace_matching(E_dirs, ov_dirs, rank, summary)


def random_baseline(
    d: int, rank: int, n_runs: int = 50, summary: Summary = "largest", seed: int = 0
) -> tuple[float, float]:
    """Matching score of two unrelated circuits: ``(mean, std)`` over ``n_runs`` pairs of uniformly random
    ``rank``-dimensional subspaces of ``R^d`` (what the top singular vectors of two independent Gaussian
    matrices span). Lessons 4 and 5.

    A trained score well above this mean is evidence of real alignment, not chance overlap.
    """
    _check_rank(rank, d)
    if isinstance(n_runs, bool) or not isinstance(n_runs, int | np.integer) or n_runs < 2:
        raise ValueError(f"n_runs must be an integer >= 2 (a mean and a spread need two runs), got {n_runs!r}.")
    rng = np.random.default_rng(seed)
    scores = []
    for _ in range(n_runs):
        # The top-rank left singular vectors of a Gaussian d x d matrix span a uniformly random subspace;
        # so does the QR of a Gaussian [d, rank] block, without a d x d SVD (d = 576 in lesson 5).
        A = np.linalg.qr(rng.standard_normal((d, rank)))[0]
        B = np.linalg.qr(rng.standard_normal((d, rank)))[0]
        scores.append(summarise(principal_cosines(A, B), summary))
    return float(np.mean(scores)), float(np.std(scores))


def expected_random_matching(d: int, rank: int, summary: Summary = "largest") -> float:
    """What :func:`random_baseline` should give for two random ``rank``-dim subspaces of R^d. Lesson 4.

    * ``"rms"``: ``sqrt(rank / d)``, the square root of ``E[mean cos^2] = rank / d`` (exact: a random
      unit vector has expected squared length ``rank / d`` inside a fixed ``rank``-dim subspace). The
      mean of the RMS itself is smaller (Jensen's inequality), slightly: about 0.349 against 0.354 at
      ``d = 32, rank = 4`` (Monte Carlo, 4000 pairs).
    * ``"largest"``: ``sqrt(4 a (1 - a))`` with ``a = rank / d`` (capped at 1): the upper edge of the
      Wachter law for squared cosines between two random subspaces, reached only as ``d`` grows with
      ``a`` fixed. At small ``d`` the mean sits well below it: about 0.54 against 0.66 at ``d = 32,
      rank = 4``; use :func:`random_baseline` there.
    """
    _check_rank(rank, d)
    a = rank / d
    if summary == "rms":
        return math.sqrt(a)
    if summary == "largest":
        return 1.0 if a >= 0.5 else math.sqrt(4 * a * (1 - a))
    raise ValueError(f"summary must be 'largest' or 'rms', got {summary!r}.")


def expected_projected_length(d: int, rank: int) -> float:
    """Mean length of a random unit vector of R^d projected onto a fixed ``rank``-dim subspace. Lesson 4.

    The squared length is Beta(rank/2, (d - rank)/2), so the mean length is
    ``Gamma((rank + 1)/2) Gamma(d/2) / (Gamma(rank/2) Gamma((d + 1)/2))``: a little below
    ``sqrt(rank / d)``, which is the root of the mean *squared* length (0.335 against 0.354 at d = 32,
    rank = 4). The chance level of :func:`embedding_usage` for a map whose subspace is random.
    """
    _check_rank(rank, d)
    if rank == d:
        return 1.0
    return math.exp(math.lgamma((rank + 1) / 2) + math.lgamma(d / 2) - math.lgamma(rank / 2) - math.lgamma((d + 1) / 2))


def first_step_where(steps: Any, values: Any, threshold: float, below: bool = False) -> int | None:
    """The first training step at which ``values`` is above ``threshold`` (``below=True``: below it),
    or ``None`` if it never is. ``steps`` and ``values`` are one curve, checkpoint by checkpoint. Lesson 4.

    Used to say *in which order* two curves cross their thresholds (the QK-OV match rising above its
    random baseline, the OOD error falling), run by run, instead of claiming one order for every run.
    """
    steps, values = np.asarray(steps), np.asarray(values, dtype=float)
    if steps.shape != values.shape or steps.ndim != 1:
        raise ValueError(f"steps and values must be 1-d and of one length, got {steps.shape} and {values.shape}.")
    hit = values < threshold if below else values > threshold
    return int(steps[np.argmax(hit)]) if hit.any() else None


def estimate_rank(M: Any, k: int | None = None, strategy: str = "i") -> int:
    """Number of singular values of ``M`` above the noise, by ScreeNOT (Donoho, Gavish & Romanov). Lesson 4.

    ``k`` is an upper bound on the rank ScreeNOT may use to model the noise; it must be below the
    smaller side of ``M`` (default: a third of it). Wraps ``screenot.adaptiveHardThresholding``.
    """
    from screenot import adaptiveHardThresholding

    M = as_matrix(M, "M")
    smaller = min(M.shape)
    if k is None:
        k = max(1, smaller // 3)
    if not 1 <= k < smaller:
        raise ValueError(
            f"ScreeNOT's k (an upper bound on the rank) must be in [1, {smaller - 1}] for a {M.shape} matrix, got {k}."
        )
    _, _, r = adaptiveHardThresholding(M, k, strategy=strategy)
    return int(r)


# ---------------------------------------------------------------------------------------------
# From a model
# ---------------------------------------------------------------------------------------------


def circuit_metrics(
    model: Any,
    ranks: tuple[int, ...] = (4, 8),
    distance: int | None = 0,
    baseline_runs: int = 0,
) -> dict[str, float]:
    """All of lesson 4's weight metrics for a 2-layer model (L0H0 -> L1H0: ``blocks.0`` head 0 -> ``blocks.1`` head 0).

    Returns ``diag_zscore``, ``mismatch`` (token mismatch ratio), and for each rank ``r``:
    ``match_largest_r``, ``match_rms_r`` (QK-OV matching) and ``embed_ov_largest_r``, ``embed_ov_rms_r``.
    ``distance``: the rotary distance for L1H0's ``W_qk`` (``None`` for non-rotary models).
    """
    if len(model.blocks) < 2:
        raise ValueError("circuit_metrics needs a model with at least 2 layers (previous-token head, then induction head).")
    l1, l2 = HeadWeights.from_model(model, 0), HeadWeights.from_model(model, 1)
    base = model.cfg.rotary_base
    if model.cfg.positions != "rotary":
        distance = None
    W_qk = qk_circuit(l2.W_Q[0], l2.W_K[0], distance, base)
    W_ov = ov_circuit(l1.W_V[0], l1.W_O[0])
    tokens = token_matrix(model.embed.W_E, qkov_circuit(W_qk, W_ov))
    out = {"diag_zscore": diagonal_zscore(tokens), "mismatch": token_mismatch_ratio(tokens)}
    W_E = as_matrix(model.embed.W_E, "W_E")
    for r in ranks:
        for summary in ("largest", "rms"):
            out[f"match_{summary}_{r}"] = qk_ov_matching(W_qk, W_ov, r, summary)
            out[f"embed_ov_{summary}_{r}"] = embedding_ov_matching(W_E, W_ov, r, summary)
    return out


def ov_output_share_in_embedding_span(W_E: Any, W_ov: Any, rank: int) -> tuple[float, float]:
    """Does layer 1 write into the subspace the token embeddings span? Lesson 4.

    Returns ``(share, chance)``: ``share`` is the mean, over ``W_ov``'s top-``rank`` output directions
    (right singular vectors), of the share of their squared length inside the row space of ``W_E``
    (``[vocab, d_model]``, all of its directions, not only the top ones); ``chance = dim / d_model`` is
    the expected share of a random direction, ``dim`` the dimension of that row space.
    """
    W_E, W_ov = as_matrix(W_E, "W_E"), as_matrix(W_ov, "W_ov")
    if W_E.shape[1] != W_ov.shape[0] or W_ov.shape[0] != W_ov.shape[1]:
        raise ValueError(f"W_E [vocab, d_model] {W_E.shape} and W_ov [d_model, d_model] {W_ov.shape} must share d_model.")
    _check_rank(rank, W_ov.shape[1])
    _, sv, Vt_E = np.linalg.svd(W_E, full_matrices=False)
    dim = int(np.sum(sv > sv[0] * max(W_E.shape) * np.finfo(np.float64).eps))
    span = Vt_E[:dim]  # [dim, d_model], orthonormal rows
    out_dirs = np.linalg.svd(W_ov)[2][:rank]  # [rank, d_model], unit rows
    share = float(np.mean(np.sum((out_dirs @ span.T) ** 2, axis=1)))
    return share, dim / W_E.shape[1]


def embedding_usage(W_E: Any, W: Any, rank: int) -> tuple[np.ndarray, float]:
    """How much of each token's own embedding, and of the mean embedding, a map ``W [d_model, d_head]`` reads. Lesson 4.

    Splits the embeddings into the part all tokens share (the mean row ``mu``) and each token's own
    part (``W_E[t] - mu``), normalises each to unit length, and returns the length of its projection
    onto the top-``rank`` input directions of ``W`` (left singular vectors): ``(individual [vocab], mean)``,
    each in ``[0, 1]``. A previous-token head with rotary positions needs the same query for every
    token, so its ``W_Q`` and ``W_K`` can lean on the shared part.
    """
    W_E, W = as_matrix(W_E, "W_E"), as_matrix(W, "W")
    if W_E.shape[1] != W.shape[0]:
        raise ValueError(f"W_E [vocab, d_model] {W_E.shape} and W [d_model, d_head] {W.shape} must share d_model.")
    _check_rank(rank, min(W.shape))
    mu = W_E.mean(axis=0, keepdims=True)
    parts = np.concatenate([W_E - mu, mu], axis=0)
    norms = np.linalg.norm(parts, axis=1, keepdims=True)
    parts = parts / np.where(norms == 0, 1.0, norms)
    U = np.linalg.svd(W, full_matrices=False)[0][:, :rank]
    coeffs = np.linalg.norm(parts @ U, axis=1)
    return coeffs[:-1], float(coeffs[-1])
