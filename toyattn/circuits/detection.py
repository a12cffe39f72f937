"""Find previous-token and induction heads in any hooked model by their attention on repeated random tokens, and read their QK-OV bridge.

Taught in lesson 5 (``notebooks/05_induction_circuits``). The scores follow Olsson et al., "In-context
Learning and Induction Heads" (2022) and ARENA 3.0 chapter 1.2 (see ``docs/references.md``):
on a random sequence of ``L`` tokens repeated twice, an **induction head** at position ``t`` of the
second half attends to ``t - L + 1`` (the token after the previous occurrence of the current
token); a **previous-token head** attends to ``t - 1``. Each score is that attention weight averaged
over positions and sequences, in ``[0, 1]``.

Works on every model with the course's hook points (``blocks.{l}.attn.hook_pattern``): the toy
:class:`~toyattn.models.transformer.Transformer` and :class:`~toyattn.models.llama.Llama`.
The QK-OV matching of head pairs uses :func:`toyattn.circuits.matching.qk_ov_matching`'s definition,
computed from each circuit's factors so that a ``576 x 576`` circuit costs a ``64 x 64`` SVD.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from toyattn.arrays import as_matrix
from toyattn.circuits.matching import summarise

__all__ = [
    "repeated_random_tokens",
    "head_scores",
    "top_heads",
    "head_factors",
    "ov_matrix",
    "qk_matrix",
    "token_matrices",
    "key_directions",
    "output_directions",
    "pair_matching",
    "k_composition_factored",
    "random_matching_baseline",
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
def head_scores(model: Any, tokens: torch.Tensor, length: int) -> dict[str, np.ndarray]:
    """``{"previous_token": [n_layers, n_heads], "induction": [n_layers, n_heads]}`` on repeated tokens.

    ``tokens`` end with two copies of ``length`` tokens (as :func:`repeated_random_tokens` makes
    them, optionally after a prefix). Both scores average over the queries of the second copy (each
    has an earlier occurrence of its token, ``length`` positions back).
    """
    T = tokens.shape[1]
    if T < 2 * length:
        raise ValueError(f"tokens have {T} positions, fewer than two copies of length={length}.")
    names = [f"blocks.{i}.attn.hook_pattern" for i in range(len(model.blocks))]
    _, cache = model.run_with_cache(tokens, names_filter=names)
    q = torch.arange(T - length, T)
    prev, ind = [], []
    for name in names:
        p = cache[name]  # [batch, heads, q, k]
        prev.append(p[:, :, q, q - 1].mean(dim=(0, 2)))
        ind.append(p[:, :, q, q - length + 1].mean(dim=(0, 2)))
    return {"previous_token": torch.stack(prev).numpy(), "induction": torch.stack(ind).numpy()}


def top_heads(scores: np.ndarray, k: int) -> list[tuple[int, int, float]]:
    """The ``k`` highest-scoring heads as ``(layer, head, score)``, best first."""
    flat = np.argsort(scores, axis=None)[::-1][:k]
    return [(int(i // scores.shape[1]), int(i % scores.shape[1]), float(scores.flat[i])) for i in flat]


def head_factors(model: Any, layer: int, head: int, fold: bool = True) -> dict[str, np.ndarray]:
    """One head's ``W_Q, W_K, W_V [d_model, d_head]`` and ``W_O [d_head, d_model]``, float64.

    Grouped-query models: the key/value head the query head reads. ``fold=True`` multiplies the
    rows of ``W_Q``, ``W_K``, ``W_V`` by the gain of the norm before attention (RMSNorm, or
    LayerNorm, whose centring is also folded in), so the circuits read the residual stream itself,
    up to one positive scale per token (see :func:`toyattn.circuits.composition.fold_norm`).
    """
    from toyattn.circuits.composition import fold_norm

    attn = model.blocks[layer].attn
    kv = model.cfg.kv_head(head) if hasattr(model.cfg, "kv_head") else head
    f = {name: as_matrix(getattr(attn, name)[h], name) for name, h in (("W_Q", head), ("W_K", kv), ("W_V", kv), ("W_O", head))}
    norm = model.blocks[layer].ln1
    if fold and hasattr(norm, "weight"):
        gain = as_matrix(norm.weight, "ln1.weight", ndim=1)
        center = isinstance(norm, torch.nn.LayerNorm)
        for name in ("W_Q", "W_K", "W_V"):
            f[name] = fold_norm(f[name], gain, center=center)
    return f


def ov_matrix(f: dict[str, np.ndarray]) -> np.ndarray:
    """A head's OV circuit ``W_ov = W_V W_O`` ``[d_model, d_model]`` from :func:`head_factors`."""
    return f["W_V"] @ f["W_O"]


def qk_matrix(f: dict[str, np.ndarray], distance: int = 0, base: float = 10000.0) -> np.ndarray:
    """A head's QK circuit ``W_Q R(distance) W_K^T / sqrt(d_head)`` ``[d_model, d_model]`` (see :func:`toyattn.circuits.matching.qk_circuit`)."""
    from toyattn.circuits.matching import qk_circuit

    return qk_circuit(f["W_Q"], f["W_K"], distance, base)


def token_matrices(model: Any) -> tuple[np.ndarray, np.ndarray]:
    """``(W_E [vocab, d_model], W_U [d_model, vocab])`` of a hooked model, float64, the final norm folded into ``W_U``.

    The final norm's gain (and, for LayerNorm, its centring) is folded into ``W_U`` as
    :func:`head_factors` folds ``ln1`` into a head, so ``x W_U`` is the logit up to one positive
    scale per token. Any unembedding bias is left out: it is the same for every source token.
    """
    from toyattn.circuits.composition import fold_norm

    W_E = model.embed.W_E if hasattr(model, "embed") else model.W_E
    W_U = model.unembed.weight.T if hasattr(model, "unembed") else model.W_U
    W_E, W_U = as_matrix(W_E, "W_E"), as_matrix(W_U, "W_U")
    norm = model.ln_final
    if hasattr(norm, "weight"):
        W_U = fold_norm(W_U, as_matrix(norm.weight, "ln_final.weight", ndim=1), center=isinstance(norm, torch.nn.LayerNorm))
    return W_E, W_U


def _top_right_vectors(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Right singular vectors ``[d, k]`` of ``left @ right.T`` (both ``[d, k]``), from a ``k x k`` SVD.

    Computed with torch, so it follows ``torch.set_num_threads`` (NumPy's BLAS threads can spin
    against each other on a busy machine).
    """
    _, Rl = torch.linalg.qr(torch.from_numpy(np.asarray(left, dtype=np.float64)))
    Qr, Rr = torch.linalg.qr(torch.from_numpy(np.asarray(right, dtype=np.float64)))
    _, _, Vh = torch.linalg.svd(Rl @ Rr.T)
    return (Qr @ Vh.T).numpy()


def key_directions(f: dict[str, np.ndarray]) -> np.ndarray:
    """Key-side directions of ``W_qk = W_Q W_K^T`` (right singular vectors, largest first), ``[d_model, d_head]``.

    Distance 0 (no rotary matrix), as in Song et al.'s analysis of real models.
    """
    return _top_right_vectors(f["W_Q"], f["W_K"])


def output_directions(f: dict[str, np.ndarray]) -> np.ndarray:
    """Output directions of ``W_ov = W_V W_O`` (right singular vectors, largest first), ``[d_model, d_head]``."""
    return _top_right_vectors(f["W_V"], f["W_O"].T)


def pair_matching(writer: dict[str, np.ndarray], reader: dict[str, np.ndarray], rank: int, summary: str = "largest") -> float:
    """QK-OV matching of a writer head's OV output and a reader head's QK key side at ``rank``.

    The same number as :func:`toyattn.circuits.matching.qk_ov_matching` on the two ``[d_model, d_model]``
    circuits: cosines of the principal angles between the two top-``rank`` subspaces, summarised.
    """
    out, keys = output_directions(writer), key_directions(reader)
    if not 1 <= rank <= min(out.shape[1], keys.shape[1]):
        raise ValueError(f"rank must be in [1, {min(out.shape[1], keys.shape[1])}] (the head width), got {rank}.")
    cos = np.clip(torch.linalg.svdvals(torch.from_numpy(keys[:, :rank].T @ out[:, :rank])).numpy(), 0.0, 1.0)
    return summarise(cos, summary)  # type: ignore[arg-type]


def k_composition_factored(writer: dict[str, np.ndarray], reader: dict[str, np.ndarray]) -> float:
    """K-composition ``||W_ov^1 W_qk^2^T||_F / (||W_ov^1||_F ||W_qk^2||_F)`` from the heads' factors.

    The same number as :func:`toyattn.circuits.composition.k_composition` on the ``[d_model, d_model]``
    circuits; here every product is ``d_head x d_head`` (``||A B^T||_F^2 = tr(A^T A B^T B)``).
    """
    V, O, Q, K = writer["W_V"], writer["W_O"], reader["W_Q"], reader["W_K"]
    gram = lambda X: X.T @ X  # noqa: E731
    # W_ov W_qk^T = V (O K) Q^T: norm^2 = tr(V^T V M Q^T Q M^T), M = O K
    M = O @ K
    num = np.trace(gram(V) @ M @ gram(Q) @ M.T)
    n_ov = np.trace(gram(V) @ O @ O.T)
    n_qk = np.trace(gram(Q) @ gram(K))
    return float(math.sqrt(max(num, 0.0) / (n_ov * n_qk)))



def random_matching_baseline(d: int, rank: int, n_runs: int = 50, summary: str = "largest", seed: int = 0) -> tuple[float, float]:
    """``(mean, std)`` of the matching of two uniformly random ``rank``-dim subspaces of ``R^d``.

    The same distribution as :func:`toyattn.circuits.matching.random_baseline` (the top singular vectors of a
    Gaussian matrix span a uniformly random subspace), drawn as the QR of a ``[d, rank]`` Gaussian, so
    ``d = 576`` costs no ``576 x 576`` SVD.
    """
    rng = np.random.default_rng(seed)
    scores = []
    for _ in range(n_runs):
        A = np.linalg.qr(rng.standard_normal((d, rank)))[0]
        B = np.linalg.qr(rng.standard_normal((d, rank)))[0]
        scores.append(summarise(np.clip(np.linalg.svd(A.T @ B, compute_uv=False), 0.0, 1.0), summary))  # type: ignore[arg-type]
    return float(np.mean(scores)), float(np.std(scores))
