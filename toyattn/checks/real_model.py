"""Checks for lesson 6 (``solutions/06_real_model_induction``), in the problem set's order: RMSNorm (exercise 1), rotary
positions (2), grouped-query causal attention (3), the SwiGLU MLP (4), direct logit attribution (5) and patching
one head (6).

Every check draws fresh inputs from its seed, refuses answers that call the course's own answer
(:mod:`toyattn.models.llama`, :mod:`toyattn.circuits.attribution`, or torch's fused versions) and names the common
mistakes: epsilon outside the square root, a centred norm, the rotary pairs interleaved or turned the wrong
way, key/value heads shared the wrong way, no causal mask or no scaling, the gate on the wrong branch, the
final norm's scale left out of an attribution, a patch at the wrong position or in the wrong direction.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from toyattn.checks.answers import Returned
from toyattn.checks.core import Case, assert_close, exercise_check, torch_generator
from toyattn.checks.guards import forbid_calls_into, forbid_torch, no_hooks_left
from toyattn.circuits import attribution
from toyattn.models import attention, llama, transformer
from toyattn.models.transformer import apply_rotary

__all__ = ["check_rms_norm", "check_rotary", "check_gqa_attention", "check_swiglu", "check_logit_attribution",
           "check_patch_head_at"]


def _no_library(*modules, what: str):
    names = " and ".join(m.__name__ for m in modules)
    return forbid_calls_into(*modules, hint=f"{names} holds the course's answer; the exercise is to {what} yourself.")


def _judge(case: Case, got: Returned, expected, mistakes: dict, rtol: float = 1e-4, atol: float = 1e-5) -> None:
    assert_close(got, expected, what=case.name, rtol=rtol, atol=atol, check_type=False,
                 mistakes={k: (lambda v=v: v) for k, v in mistakes.items()})


# --------------------------------------------------------------------------------------------------
# Exercise 1: RMSNorm
# --------------------------------------------------------------------------------------------------


def _rms_cases(rng: np.random.Generator) -> list[Case]:
    g = torch_generator(rng)
    cases = []
    # eps large next to mean(x^2) in some rows, so where it goes changes the answer
    for shape, eps, scale in (((2, 5, 8), 1e-5, 1.0), ((3, 6), 0.5, 0.3), ((4, 16), 2.0, 3.0)):
        x = scale * torch.randn(*shape, generator=g) + 0.7  # a non-zero mean: centring changes the answer
        cases.append(Case(f"x of shape {shape}, eps {eps}", (x, 0.5 + torch.rand(shape[-1], generator=g), eps)))
    return cases


def _rms_reference(x, weight, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight


@exercise_check(cases=_rms_cases, during=[_no_library(llama, what="write RMSNorm"),
                                          forbid_torch("rms_norm", "layer_norm")])
def check_rms_norm(case: Case, got: Returned) -> None:
    """``fn(x [..., d], weight [d], eps) -> [..., d]``: ``x / sqrt(mean(x^2) + eps) * weight``."""
    x, w, eps = case.args
    ms = x.pow(2).mean(-1, keepdim=True)
    centred = x - x.mean(-1, keepdim=True)
    _judge(case, got, _rms_reference(x, w, eps), {
        "eps added outside the square root, x / (rms(x) + eps): it goes inside, sqrt(mean(x^2) + eps)":
            x / (ms.sqrt() + eps) * w,
        "eps left out": x / ms.sqrt() * w,
        "a LayerNorm (x centred first); RMSNorm does not subtract the mean":
            centred * torch.rsqrt(centred.pow(2).mean(-1, keepdim=True) + eps) * w,
        "the gain (weight) left out": _rms_reference(x, torch.ones_like(w), eps),
    })


# --------------------------------------------------------------------------------------------------
# Exercise 2: rotary positions
# --------------------------------------------------------------------------------------------------


def _rotary_cases(rng: np.random.Generator) -> list[Case]:
    g = torch_generator(rng)
    cases = []
    for b, p, h, e, base, start in ((1, 6, 2, 8, 10000.0, 0), (2, 5, 3, 16, 100000.0, 3), (1, 4, 1, 4, 500.0, 0)):
        positions = torch.arange(start, start + p)
        cases.append(Case(f"x [{b}, {p}, {h}, {e}], positions {start}..{start + p - 1}, base {base:g}",
                          (torch.randn(b, p, h, e, generator=g), positions, base)))
    return cases


def transformers_rotary(x: torch.Tensor, positions: torch.Tensor, base: float) -> torch.Tensor:
    """``transformers``' Llama convention written out (``rotate_half``; cos and sin repeated over both halves)."""
    e = x.shape[-1]
    inv_freq = 1.0 / base ** (torch.arange(0, e, 2, dtype=torch.float32) / e)
    emb = torch.cat([positions.float()[:, None] * inv_freq] * 2, dim=-1)  # [pos, e]
    cos, sin = emb.cos()[None, :, None], emb.sin()[None, :, None]
    rotate_half = torch.cat([-x[..., e // 2:], x[..., : e // 2]], dim=-1)
    return x * cos + rotate_half * sin


def _interleaved(x, positions, base):
    e = x.shape[-1]
    freqs = base ** (-torch.arange(0, e, 2, dtype=torch.float32) / e)
    ang = positions.float()[:, None] * freqs
    cos, sin = ang.cos()[None, :, None], ang.sin()[None, :, None]
    x1, x2 = x[..., 0::2], x[..., 1::2]
    return torch.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1).flatten(-2)


@exercise_check(cases=_rotary_cases, during=[_no_library(llama, transformer, what="write the rotation")])
def check_rotary(case: Case, got: Returned) -> None:
    """``fn(x [batch, pos, heads, d_head], positions [pos], base) -> same shape``: the "rotate half" layout of
    Llama, ``transformers`` and :func:`toyattn.models.transformer.apply_rotary` (which agree: both are the reference)."""
    x, positions, base = case.args
    expected = apply_rotary(x, positions, base)
    assert torch.allclose(expected, transformers_rotary(x, positions, base), atol=1e-5), "the two references disagree"
    _judge(case, got, expected, {
        "the interleaved layout (pairs (0, 1), (2, 3), ..., as in GPT-J and llama.cpp); Llama in transformers pairs "
        "coordinate i with i + d_head/2": _interleaved(x, positions, base),
        "a rotation by -angle (sin with the wrong sign)": apply_rotary(x, -positions, base),
        "the positions counted from 0 instead of the positions given": apply_rotary(x, torch.arange(len(positions)), base),
        "the default base 10000 instead of the base given": apply_rotary(x, positions, 10000.0),
    })


# --------------------------------------------------------------------------------------------------
# Exercise 3: grouped-query causal attention
# --------------------------------------------------------------------------------------------------


def _gqa_cases(rng: np.random.Generator) -> list[Case]:
    g = torch_generator(rng)
    cases = []
    for b, p, h, kv, e in ((1, 5, 4, 2, 4), (2, 6, 6, 3, 8), (1, 4, 3, 1, 2)):
        q, k, v = (torch.randn(b, p, n, e, generator=g) * 1.5 for n in (h, kv, kv))
        cases.append(Case(f"{h} query heads sharing {kv} key/value heads, {p} positions, d_head {e}", (q, k, v)))
    return cases


def _attend(q, k, v, *, interleave=True, causal=True, scale=True, strict=False):
    group = q.shape[2] // k.shape[2]
    if interleave:
        k, v = k.repeat_interleave(group, dim=2), v.repeat_interleave(group, dim=2)
    else:
        k, v = k.repeat(1, 1, group, 1), v.repeat(1, 1, group, 1)
    scores = torch.einsum("bqhe,bkhe->bhqk", q, k) / (math.sqrt(q.shape[-1]) if scale else 1.0)
    n = q.shape[1]
    if causal:
        mask = torch.ones(n, n, dtype=torch.bool).triu(0 if strict else 1)
        scores = scores.masked_fill(mask, float("-inf"))
    return torch.einsum("bhqk,bkhe->bqhe", torch.nan_to_num(torch.softmax(scores, -1)), v)


@exercise_check(cases=_gqa_cases, during=[_no_library(llama, attention, what="write the attention"),
                                          forbid_torch("scaled_dot_product", hint="Write the scores, mask and softmax yourself.")])
def check_gqa_attention(case: Case, got: Returned) -> None:
    """``fn(q [batch, pos, n_heads, d_head], k, v [batch, pos, n_kv_heads, d_head]) -> z [batch, pos, n_heads, d_head]``:
    causal softmax attention, scores divided by sqrt(d_head), query head ``h`` reading key/value head ``h // (n_heads // n_kv_heads)``."""
    q, k, v = case.args
    _judge(case, got, _attend(q, k, v), {
        "key/value heads shared the wrong way: query head h reads kv head h % n_kv_heads (k.repeat tiles); "
        "in Llama, consecutive query heads share one (repeat_interleave)": _attend(q, k, v, interleave=False),
        "no causal mask: every position attends to later ones too": _attend(q, k, v, causal=False),
        "scores not divided by sqrt(d_head)": _attend(q, k, v, scale=False),
        "the mask also hides the diagonal: a position must attend to itself": _attend(q, k, v, strict=True),
    })


# --------------------------------------------------------------------------------------------------
# Exercise 4: SwiGLU MLP
# --------------------------------------------------------------------------------------------------


def _swiglu_cases(rng: np.random.Generator) -> list[Case]:
    g = torch_generator(rng)
    cases = []
    for shape, d, m in (((2, 3), 6, 10), ((5,), 4, 12)):
        x = torch.randn(*shape, d, generator=g) * 2
        W_gate, W_up, W_down = torch.randn(d, m, generator=g), torch.randn(d, m, generator=g), torch.randn(m, d, generator=g) / 3
        cases.append(Case(f"x {(*shape, d)}, d_mlp {m}", (x, W_gate, W_up, W_down)))
    return cases


@exercise_check(cases=_swiglu_cases, during=[_no_library(llama, what="write the MLP")])
def check_swiglu(case: Case, got: Returned) -> None:
    """``fn(x [..., d], W_gate [d, d_mlp], W_up [d, d_mlp], W_down [d_mlp, d]) -> [..., d]``: ``(silu(x W_gate) * (x W_up)) W_down``."""
    x, gate, up, down = case.args
    silu = torch.nn.functional.silu
    _judge(case, got, (silu(x @ gate) * (x @ up)) @ down, {
        "silu applied to the up branch instead of the gate": ((x @ gate) * silu(x @ up)) @ down,
        "a sigmoid gate (GLU) instead of silu (SwiGLU)": (torch.sigmoid(x @ gate) * (x @ up)) @ down,
        "a GELU gate instead of silu": (torch.nn.functional.gelu(x @ gate) * (x @ up)) @ down,
        "no gating product: silu(x W_gate) W_down": silu(x @ gate) @ down,
    })


# --------------------------------------------------------------------------------------------------
# Exercise 5: direct logit attribution
# --------------------------------------------------------------------------------------------------


def _dla_cases(rng: np.random.Generator) -> list[Case]:
    g = torch_generator(rng)
    cases = []
    # eps 1e-5 as in SmolLM2, and a large one: where eps goes (inside the square root) must show
    for p, h, d, vocab, eps in ((4, 3, 8, 11, 1e-5), (6, 2, 12, 7, 1e-5), (5, 2, 6, 9, 4.0)):
        heads = torch.randn(p, h, d, generator=g)
        final = heads.sum(1) + 3 * torch.randn(p, d, generator=g)  # the heads plus everything else
        gain, W_U = 0.5 + torch.rand(d, generator=g), torch.randn(d, vocab, generator=g)
        targets = torch.randint(0, vocab, (p,), generator=g)
        cases.append(Case(f"{p} positions, {h} heads, d_model {d}, vocab {vocab}", (heads, final, gain, eps, W_U, targets)))
    return cases


def _dla(heads, final, gain, eps, W_U, targets, *, scale=True, use_gain=True, norm_each=False, eps_at="inside"):
    direction = ((gain if use_gain else torch.ones_like(gain))[:, None] * W_U)[:, targets].T  # [pos, d]
    if norm_each:
        heads = heads * torch.rsqrt(heads.pow(2).mean(-1, keepdim=True) + eps)
    elif scale:
        ms = final.pow(2).mean(-1, keepdim=True)
        rms = {"inside": (ms + eps).sqrt(), "outside": ms.sqrt() + eps, "none": ms.sqrt()}[eps_at]
        heads = heads / rms[:, None]
    return torch.einsum("phd,pd->ph", heads, direction)


@exercise_check(cases=_dla_cases, during=[_no_library(attribution, what="attribute the logit")])
def check_logit_attribution(case: Case, got: Returned) -> None:
    """``fn(head_out [pos, heads, d], final_resid [pos, d], gain [d], eps, W_U [d, vocab], targets [pos]) -> [pos, heads]``:
    each head's direct contribution to the logit of ``targets[p]``, through the final RMSNorm with its scale frozen."""
    args = case.args
    _judge(case, got, _dla(*args), {
        "the final norm's scale 1/rms(final residual) left out": _dla(*args, scale=False),
        "the final norm's gain left out": _dla(*args, use_gain=False),
        "each head's output normed on its own; the norm divides the whole residual stream by one rms per position":
            _dla(*args, norm_each=True),
        "eps added outside the square root of the final norm: rms = sqrt(mean(x^2) + eps)": _dla(*args, eps_at="outside"),
        "the final norm's eps left out": _dla(*args, eps_at="none"),
    })


# --------------------------------------------------------------------------------------------------
# Exercise 6: patch one head
# --------------------------------------------------------------------------------------------------


def _tiny_llama(seed: int) -> llama.Llama:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        cfg = llama.LlamaConfig(vocab_size=13, d_model=16, n_layers=2, n_heads=4, n_kv_heads=2, d_mlp=16)
        model = llama.Llama(cfg)
        for p in model.parameters():
            p.data.normal_(0.0, 0.6)
    return model.eval()


def _patch_cases(rng: np.random.Generator) -> list[Case]:
    g = torch_generator(rng)
    cases = []
    for layer, head, position in ((0, 1, -1), (1, 3, 4), (0, 2, 2)):
        model = _tiny_llama(int(rng.integers(2**31)))
        clean = torch.randint(0, 13, (3, 7), generator=g)
        corrupted = clean.clone()
        corrupted[:, 1:3] = (clean[:, 1:3] + 5) % 13
        cases.append(Case(f"layer {layer} head {head}, position {position}", (model, corrupted, clean, layer, head, position)))
    return cases


@exercise_check(cases=_patch_cases, during=[no_hooks_left(), _no_library(attribution, what="patch the head")])
def check_patch_head_at(case: Case, got: Returned) -> None:
    """``fn(model, corrupted, clean, layer, head, position) -> logits``: a run on ``corrupted`` in which one head's
    output (``hook_z``) at one position is what it was on ``clean``."""
    model, corrupted, clean, layer, head, position = case.args
    with torch.no_grad():
        expected = attribution.patch_head(model, corrupted, clean, layer, head, position)
    T = corrupted.shape[1]
    pos = position % T
    _judge(case, got, expected, {
        "the head patched at every position, not only the one asked for": attribution.patch_head(model, corrupted, clean, layer, head, slice(None)),
        "the head patched one position too early": attribution.patch_head(model, corrupted, clean, layer, head, pos - 1),
        "the patch the wrong way round: a clean run with the corrupted output patched in":
            attribution.patch_head(model, clean, corrupted, layer, head, position),
        "the whole layer patched at that position, not one head": attribution.patch_head(model, corrupted, clean, layer, slice(None), pos),
    })
