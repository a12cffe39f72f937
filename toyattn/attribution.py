"""Attributing a real model's predictions to its heads: direct logit attribution, per-head patching, in-context learning. Taught in lesson 6.

Lesson 6 (``notebooks/06_real_model_induction``) reads SmolLM2-135M (:class:`toyattn.models.llama.Llama`)
on repeated real text with these tools. Conventions are the course's: row vectors, heads and layers
counted from 0, a head's output at a position is ``z[h] @ W_O[h]``.

* :func:`logit_attribution`: each head's (and MLP's, and the embedding's) direct contribution to a
  token's logit. The final RMSNorm divides the whole residual stream by one number per position,
  ``rms(x)``; as in the literature (Elhage et al. 2021; ARENA 1.2's ``apply_ln_to_stack``) that number
  is taken from the run and frozen, so the logit is exactly the sum of the parts.
* :func:`patch_each_head`: the logit difference after patching each head's output, one head at a
  time, from a clean run into a corrupted one at the last position (exact, and ~100x cheaper than one
  full forward per head: positions before the last are untouched by such a patch, so later layers reuse
  the corrupted run's keys and values there). :func:`patch_head` is the plain hooked version.
* :func:`token_losses` and :func:`icl_score`: Olsson et al. (2022)'s in-context learning score,
  the loss at a late token minus the loss at an early token (negative when context helps).
* :func:`copying_scores`, :func:`composition_scores`, :func:`bridge_matching`: circuit reading for
  every head (Elhage et al.'s eigenvalue copying score; Q-, K- and V-composition; lesson 5's QK-OV
  matching at a real query-key distance, with the rotary matrix).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from toyattn.circuits import rotary_matrix, summarise
from toyattn.induction_heads import head_factors, output_directions, token_matrices
from toyattn.models.transformer import apply_rotary

__all__ = [
    "bridge_matching",
    "composition_scores",
    "copying_scores",
    "icl_score",
    "logit_attribution",
    "logit_difference",
    "patch_each_head",
    "patch_head",
    "prefix_matching_scores",
    "random_pair_composition",
    "token_losses",
]

KINDS = ("Q", "K", "V")


def _check_tokens(tokens: torch.Tensor, model: Any) -> None:
    if not isinstance(tokens, torch.Tensor) or tokens.dim() != 2 or tokens.dtype.is_floating_point:
        raise ValueError("tokens must be an integer tensor [batch, pos]; add a batch axis with tokens[None].")
    if tokens.shape[1] < 2:
        raise ValueError(f"tokens need at least 2 positions, got {tokens.shape[1]}.")


def _check_same_shape(clean: torch.Tensor, corrupted: torch.Tensor) -> None:
    if clean.shape != corrupted.shape:
        raise ValueError(f"clean {tuple(clean.shape)} and corrupted {tuple(corrupted.shape)} tokens must have the same "
                         "shape: corrupt by replacing tokens, not by adding or removing them.")


def _rms_scale(x: torch.Tensor, eps: float) -> torch.Tensor:
    """``1 / rms(x)`` per position, ``[..., 1]``: what RMSNorm multiplies by before its gain."""
    return torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)


# --------------------------------------------------------------------------------------------------
# Prefix matching
# --------------------------------------------------------------------------------------------------


@torch.no_grad()
def prefix_matching_scores(model: Any, tokens: torch.Tensor, length: int, per_sequence: bool = False) -> dict[str, np.ndarray]:
    """``{"previous_token", "induction"}``: ``[n_layers, n_heads]`` attention scores on tokens that end with two copies of ``length`` tokens.

    Lesson 5's :func:`toyattn.induction_heads.head_scores` (the same numbers), for a model on any
    device: the "induction" (prefix-matching) score is the attention from each second-copy token to the
    token after its earlier occurrence, ``length - 1`` back; the previous-token score, to the token before.
    ``per_sequence=True`` keeps the batch axis: ``[batch, n_layers, n_heads]``.
    """
    _check_tokens(tokens, model)
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


# --------------------------------------------------------------------------------------------------
# Direct logit attribution
# --------------------------------------------------------------------------------------------------


@torch.no_grad()
def logit_attribution(model: Any, tokens: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
    """Direct contributions to the logit of ``targets[b, p]`` at each position ``p``.

    Returns ``{"heads": [n_layers, n_heads, batch, pos], "mlps": [n_layers, batch, pos],
    "embed": [batch, pos], "logit": [batch, pos]}``; the parts add up to ``logit`` (the model's own).
    Each part is ``part @ (ln_final.weight * W_U[:, target]) / rms(x_final)``, the final residual's
    ``rms`` frozen from this run.
    """
    _check_tokens(tokens, model)
    if targets.shape != tokens.shape:
        raise ValueError(f"targets must be [batch, pos] like tokens {tuple(tokens.shape)}, got {tuple(targets.shape)}.")
    n = model.cfg.n_layers
    names = [f"blocks.{i}.attn.hook_z" for i in range(n)] + [f"blocks.{i}.hook_resid_post" for i in range(n)]
    names += [f"blocks.{i}.hook_attn_out" for i in range(n)] + [f"blocks.{i}.hook_resid_pre" for i in range(n)]
    logits, cache = model.run_with_cache(tokens, names_filter=names)
    final = cache[f"blocks.{n - 1}.hook_resid_post"]
    direction = (model.ln_final.weight[:, None] * model.W_U)[:, targets]  # [d, batch, pos]
    direction = direction.permute(1, 2, 0) * _rms_scale(final, model.ln_final.eps)  # [batch, pos, d]
    heads, mlps = [], []
    for i, block in enumerate(model.blocks):
        out = torch.einsum("bphe,hed->hbpd", cache[f"blocks.{i}.attn.hook_z"], block.attn.W_O)
        heads.append((out * direction).sum(-1))
        mlp = cache[f"blocks.{i}.hook_resid_post"] - cache[f"blocks.{i}.hook_resid_pre"] - cache[f"blocks.{i}.hook_attn_out"]
        mlps.append((mlp * direction).sum(-1))
    embed = (cache["blocks.0.hook_resid_pre"] * direction).sum(-1)
    logit = logits.gather(-1, targets[..., None])[..., 0]
    return {"heads": torch.stack(heads), "mlps": torch.stack(mlps), "embed": embed, "logit": logit}


# --------------------------------------------------------------------------------------------------
# Patching
# --------------------------------------------------------------------------------------------------


def logit_difference(logits: torch.Tensor, answer: torch.Tensor, wrong: torch.Tensor) -> torch.Tensor:
    """``logit[answer] - logit[wrong]`` at the last position, ``[batch]``: > 0 when the model prefers ``answer``."""
    last = logits[:, -1]
    return last.gather(-1, answer[:, None])[:, 0] - last.gather(-1, wrong[:, None])[:, 0]


@torch.no_grad()
def patch_head(model: Any, clean: torch.Tensor, corrupted: torch.Tensor, layer: int, head: int,
               position: int = -1) -> torch.Tensor:
    """Logits of a run on ``corrupted`` in which head ``head`` of ``layer`` outputs what it did on ``clean`` at ``position``."""
    _check_same_shape(clean, corrupted)
    name = f"blocks.{layer}.attn.hook_z"
    _, cache = model.run_with_cache(clean, names_filter=name)

    def put_back(z, hook):
        z = z.clone()
        z[:, position, head] = cache[name][:, position, head]
        return z

    return model.run_with_hooks(corrupted, fwd_hooks=[(name, put_back)])


def _last_position_block(block: Any, x: torch.Tensor, k_past: torch.Tensor, v_past: torch.Tensor, pos: int) -> torch.Tensor:
    """One Llama block at the last position only, ``x [N, d]``; earlier positions' keys and values come from a cache."""
    attn, cfg = block.attn, block.attn.cfg
    h = block.ln1(x)[:, None]  # [N, 1, d]
    where = torch.tensor([pos], device=x.device)
    q = apply_rotary(torch.einsum("npd,hde->nphe", h, attn.W_Q), where, cfg.rope_base)[:, 0]  # [N, heads, e]
    k = apply_rotary(torch.einsum("npd,hde->nphe", h, attn.W_K), where, cfg.rope_base)
    v = torch.einsum("npd,hde->nphe", h, attn.W_V)
    keys = torch.cat([k_past.expand(x.shape[0], -1, -1, -1), k], dim=1)  # [N, pos+1, kv, e]
    values = torch.cat([v_past.expand(x.shape[0], -1, -1, -1), v], dim=1)
    group = cfg.n_heads // cfg.n_kv_heads
    keys, values = keys.repeat_interleave(group, dim=2), values.repeat_interleave(group, dim=2)
    pattern = torch.softmax(torch.einsum("nhe,nkhe->nhk", q, keys) / math.sqrt(cfg.d_head), dim=-1)
    z = torch.einsum("nhk,nkhe->nhe", pattern, values)
    x = x + torch.einsum("nhe,hed->nd", z, attn.W_O)
    return x + block.mlp(block.ln2(x))


@torch.no_grad()
def patch_each_head(model: Any, clean: torch.Tensor, corrupted: torch.Tensor, answer: torch.Tensor,
                    wrong: torch.Tensor) -> dict[str, torch.Tensor]:
    """Logit difference (:func:`logit_difference`) with each head patched from ``clean`` into ``corrupted`` at the last position.

    Returns ``{"patched": [n_layers, n_heads, batch], "clean": [batch], "corrupted": [batch]}``; the
    same numbers as :func:`patch_head` with ``position=-1`` for every head (``tests/test_attribution.py``).
    """
    _check_same_shape(clean, corrupted)
    _check_tokens(corrupted, model)
    n, n_heads, pos = model.cfg.n_layers, model.cfg.n_heads, corrupted.shape[1] - 1
    z_names = [f"blocks.{i}.attn.hook_z" for i in range(n)]
    clean_logits, clean_cache = model.run_with_cache(clean, names_filter=z_names)
    names = z_names + [f"blocks.{i}.hook_resid_pre" for i in range(n)]
    names += [f"blocks.{i}.attn.hook_k" for i in range(n)] + [f"blocks.{i}.attn.hook_v" for i in range(n)]
    corrupted_logits, cache = model.run_with_cache(corrupted, names_filter=names)
    batch = corrupted.shape[0]
    patched = torch.empty(n, n_heads, batch, device=corrupted.device)
    for layer, block in enumerate(model.blocks):
        W_O = block.attn.W_O
        z_corr = cache[f"blocks.{layer}.attn.hook_z"][:, -1]  # [batch, heads, e]
        z_clean = clean_cache[f"blocks.{layer}.attn.hook_z"][:, -1]
        x = cache[f"blocks.{layer}.hook_resid_pre"][:, -1] + torch.einsum("bhe,hed->bd", z_corr, W_O)
        change = torch.einsum("bhe,hed->hbd", z_clean - z_corr, W_O)  # each head's own patch
        x = (x[None] + change).reshape(n_heads * batch, -1)
        block_mlp = block.mlp(block.ln2(x))
        x = x + block_mlp
        for later in range(layer + 1, n):
            k_past = cache[f"blocks.{later}.attn.hook_k"][:, :-1].repeat(n_heads, 1, 1, 1)
            v_past = cache[f"blocks.{later}.attn.hook_v"][:, :-1].repeat(n_heads, 1, 1, 1)
            x = _last_position_block(model.blocks[later], x, k_past, v_past, pos)
        logits = (model.ln_final(x) @ model.W_U)[:, None]
        patched[layer] = logit_difference(logits, answer.repeat(n_heads), wrong.repeat(n_heads)).reshape(n_heads, batch)
    return {"patched": patched, "clean": logit_difference(clean_logits, answer, wrong),
            "corrupted": logit_difference(corrupted_logits, answer, wrong)}


# --------------------------------------------------------------------------------------------------
# Loss by position: the in-context learning score
# --------------------------------------------------------------------------------------------------


@torch.no_grad()
def token_losses(model: Any, tokens: torch.Tensor) -> torch.Tensor:
    """``[batch, pos]`` cross-entropy (nats) of each token given the ones before it; column 0 (no context) is NaN."""
    _check_tokens(tokens, model)
    logits = model(tokens)[:, :-1]
    # cross_entropy in the logits' own dtype: a float64 log-softmax over a 49,152-token vocabulary would
    # cost 8 bytes per logit (800 MB for 4 texts of 512 tokens)
    loss = torch.nn.functional.cross_entropy(logits.transpose(1, 2), tokens[:, 1:], reduction="none").double()
    return torch.cat([torch.full_like(loss[:, :1], float("nan")), loss], dim=1)


def icl_score(losses: torch.Tensor, early: int = 50, late: int = 500) -> float:
    """Olsson et al.'s in-context learning score: mean loss of token ``late`` minus that of token ``early``.

    ``losses [batch, pos]`` from :func:`token_losses` (column ``t`` is the loss of the token at index
    ``t``). Negative when the model predicts later tokens better: it has learned from its context.
    """
    if not 1 <= early < late < losses.shape[1]:
        raise ValueError(f"Need 1 <= early < late < {losses.shape[1]} (the number of positions), got {early} and {late}.")
    return float((losses[:, late] - losses[:, early]).mean())


# --------------------------------------------------------------------------------------------------
# Reading the weights: copying, composition, the QK-OV bridge at a distance
# --------------------------------------------------------------------------------------------------


def copying_scores(model: Any) -> np.ndarray:
    """``[n_layers, n_heads]`` Elhage et al.'s copying score: sum(eigenvalues) / sum(|eigenvalues|) of ``W_E W_ov W_U``.

    The norms' gains are folded in (``ln1`` into the head, ``ln_final`` into ``W_U``). The nonzero
    eigenvalues of ``W_E W_V W_O W_U`` are those of the ``d_head x d_head`` matrix ``W_O (W_U W_E) W_V``.
    """
    W_E, W_U = token_matrices(model)
    UE = torch.from_numpy(W_U) @ torch.from_numpy(W_E)  # [d, d], once for every head
    out = np.zeros((model.cfg.n_layers, model.cfg.n_heads))
    for layer in range(model.cfg.n_layers):
        for head in range(model.cfg.n_heads):
            f = head_factors(model, layer, head)
            eig = torch.linalg.eigvals(torch.from_numpy(f["W_O"]) @ UE @ torch.from_numpy(f["W_V"]))
            out[layer, head] = float(eig.sum().real / eig.abs().sum())
    return out


def _circuit(f: dict[str, np.ndarray], side: str) -> tuple[np.ndarray, np.ndarray]:
    """A head's circuit as two factors ``[d, d_head] @ [d_head, d]``: "ov" = ``W_V W_O``, "qk" = ``W_Q W_K^T``, "kq" its transpose."""
    return {"ov": (f["W_V"], f["W_O"]), "qk": (f["W_Q"], f["W_K"].T), "kq": (f["W_K"], f["W_Q"].T)}[side]


def _factored_composition(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> float:
    """``||A B||_F / (||A||_F ||B||_F)`` for ``A = a0 a1``, ``B = b0 b1``; every product is ``d_head x d_head``."""
    (a0, a1), (b0, b1) = a, b
    M = a1 @ b0
    num = np.trace((a0.T @ a0) @ M @ (b1 @ b1.T) @ M.T)
    norm = lambda x0, x1: np.trace((x0.T @ x0) @ (x1 @ x1.T))  # noqa: E731
    return float(math.sqrt(max(num, 0.0) / (norm(a0, a1) * norm(b0, b1))))


def _composition(writer: dict[str, np.ndarray], reader: dict[str, np.ndarray], kind: str) -> float:
    # Row vectors: the reader's query reads x_q W_qk, its key x_k W_qk^T, its value x W_ov.
    side = {"Q": "qk", "K": "kq", "V": "ov"}[kind]
    return _factored_composition(_circuit(writer, "ov"), _circuit(reader, side))


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS} (Q-, K- or V-composition), got {kind!r}.")


def composition_scores(model: Any, heads: list[tuple[int, int]], kind: str) -> np.ndarray:
    """``[len(heads), len(heads)]``: entry ``[i, j]`` is the ``kind``-composition of writer ``heads[i]`` into reader ``heads[j]``.

    NaN where the writer is not in an earlier layer than the reader (it cannot compose). Norm gains folded in,
    query-key distance 0 (Elhage et al.; ARENA 1.2).
    """
    _check_kind(kind)
    f = {h: head_factors(model, *h) for h in heads}
    out = np.full((len(heads), len(heads)), np.nan)
    for i, w in enumerate(heads):
        for j, r in enumerate(heads):
            if w[0] < r[0]:
                out[i, j] = _composition(f[w], f[r], kind)
    return out


def random_pair_composition(model: Any, kind: str, n_pairs: int = 200, seed: int = 0) -> np.ndarray:
    """``[n_pairs]`` ``kind``-composition of random head pairs of the model (writer in an earlier layer): the baseline."""
    _check_kind(kind)
    rng = np.random.default_rng(seed)
    n, n_heads = model.cfg.n_layers, model.cfg.n_heads
    out = []
    for _ in range(n_pairs):
        lw, lr = sorted(int(x) for x in rng.choice(n, 2, replace=False))
        w, r = head_factors(model, lw, int(rng.integers(n_heads))), head_factors(model, lr, int(rng.integers(n_heads)))
        out.append(_composition(w, r, kind))
    return np.array(out)


def bridge_matching(model: Any, pairs: list[tuple[tuple[int, int], tuple[int, int]]], rank: int, distance: int) -> np.ndarray:
    """Lesson 5's QK-OV matching at a query-key ``distance``, for each ``(writer, reader)`` head pair: ``[len(pairs)]``.

    The writer's top-``rank`` output directions against the reader's top-``rank`` key directions of
    ``W_Q R(distance) W_K^T`` (largest cosine of the principal angles). Each head's directions are
    computed once, with torch (which follows ``torch.set_num_threads``).
    """
    outputs: dict[tuple[int, int], torch.Tensor] = {}
    keys: dict[tuple[int, int], torch.Tensor] = {}
    R = torch.from_numpy(rotary_matrix(model.cfg.d_head, distance, model.cfg.rope_base))

    def key_directions(head: tuple[int, int]) -> torch.Tensor:
        if head not in keys:  # right singular vectors of (W_Q R) W_K^T, from a d_head x d_head SVD
            f = head_factors(model, *head)
            _, Rq = torch.linalg.qr(torch.from_numpy(f["W_Q"]) @ R)
            Qk, Rk = torch.linalg.qr(torch.from_numpy(f["W_K"]))
            keys[head] = Qk @ torch.linalg.svd(Rq @ Rk.T)[2].T
        return keys[head]

    def output_dirs(head: tuple[int, int]) -> torch.Tensor:
        if head not in outputs:
            outputs[head] = torch.from_numpy(output_directions(head_factors(model, *head)))
        return outputs[head]

    scores = []
    for writer, reader in pairs:
        cos = torch.linalg.svdvals(key_directions(reader)[:, :rank].T @ output_dirs(writer)[:, :rank]).clamp(0.0, 1.0)
        scores.append(summarise(cos.numpy(), "largest"))
    return np.array(scores)
