"""Attributing a real model's predictions to its heads: direct logit attribution, per-head patching, in-context learning. Taught in lesson 6.

Lesson 6 (``notebooks/06_real_model_induction``) reads SmolLM2-135M (:class:`toyattn.models.llama.Llama`)
on repeated real text with these tools. Conventions are the course's: row vectors, heads and layers
counted from 0, a head's output at a position is ``z[h] @ W_O[h]``.

* :func:`logit_attribution`: each head's (and MLP's, and the embedding's) direct contribution to a
  token's logit. The final RMSNorm divides the whole residual stream by one number per position,
  ``rms(x)``; as TransformerLens's ``apply_ln_to_stack`` does (used so in ARENA 3.0's chapter 1.4.1),
  that number is taken from the run and frozen, so the logit is exactly the sum of the parts.
* :func:`patch_each_head`: the logit difference after patching each head's output, one head at a
  time, from a clean run into a corrupted one at the last position (exact, and ~100x cheaper than one
  full forward per head: positions before the last are untouched by such a patch, so later layers reuse
  the corrupted run's keys and values there). :func:`patch_head` is the plain hooked version.
* :func:`token_losses` and :func:`icl_score`: Olsson et al. (2022)'s in-context learning score,
  the loss at a late token minus the loss at an early token (negative when context helps).

Reading the same heads from their weights (copying scores, Q/K/V composition of every pair, the QK-OV
bridge at a distance) uses the circuit tools of lessons 4-5: :func:`toyattn.circuits.detection.copying_scores`,
:func:`toyattn.circuits.composition.composition_scores`, :func:`toyattn.circuits.head_circuits.bridge_matching`.
"""

from __future__ import annotations

from typing import Any

import torch

from toyattn.models.attention import attend
from toyattn.models.transformer import apply_rotary

__all__ = ["icl_score", "logit_attribution", "logit_difference", "patch_each_head", "patch_head", "token_losses"]


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
def patch_head(model: Any, corrupted: torch.Tensor, clean: torch.Tensor, layer: int, head: int | slice,
               position: int | slice = -1) -> torch.Tensor:
    """Logits of a run on ``corrupted`` in which head ``head`` of ``layer`` outputs what it did on ``clean`` at ``position``.

    ``head`` or ``position`` may be a slice (``slice(None)``: every head, or every position), which
    lesson 6's check uses to build the wrong answers it recognises. The run's own tokens come first and
    the source second, as in :func:`toyattn.sentences.interventions.patch_activation` and the exercises.
    """
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
    q = apply_rotary(torch.einsum("npd,hde->nphe", h, attn.W_Q), where, cfg.rope_base)  # [N, 1, heads, e]
    k = apply_rotary(torch.einsum("npd,hde->nphe", h, attn.W_K), where, cfg.rope_base)
    v = torch.einsum("npd,hde->nphe", h, attn.W_V)
    keys = torch.cat([k_past.expand(x.shape[0], -1, -1, -1), k], dim=1)  # [N, pos+1, kv, e]
    values = torch.cat([v_past.expand(x.shape[0], -1, -1, -1), v], dim=1)
    z = attend(attn, q, keys, values, causal=True)[:, 0]  # the models' own attention: [N, heads, e]
    x = x + torch.einsum("nhe,hed->nd", z, attn.W_O)
    return x + block.mlp(block.ln2(x))


@torch.no_grad()
def patch_each_head(model: Any, corrupted: torch.Tensor, clean: torch.Tensor, answer: torch.Tensor,
                    wrong: torch.Tensor) -> dict[str, torch.Tensor]:
    """Logit difference (:func:`logit_difference`) with each head patched from ``clean`` into ``corrupted`` at the last position.

    Returns ``{"patched": [n_layers, n_heads, batch], "clean": [batch], "corrupted": [batch]}``; the
    same numbers as :func:`patch_head` with ``position=-1`` for every head (``tests/test_circuits_attribution.py``).
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
