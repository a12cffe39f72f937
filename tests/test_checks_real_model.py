"""Lesson 6's checks: each accepts a right answer (written differently from the course's), and rejects
plausible wrong ones in class and in grading, naming the mistake."""

from __future__ import annotations

import math

import pytest
import torch
from check_helpers import verify_check

from toyattn import checks

pytestmark = pytest.mark.usefixtures("single_thread")
silu = torch.nn.functional.silu


# --- RMSNorm -----------------------------------------------------------------------------------------

def good_rms(x, weight, eps):
    return weight * x / torch.sqrt((x * x).sum(-1, keepdim=True) / x.shape[-1] + eps)


def eps_outside(x, weight, eps):
    return weight * x / (x.pow(2).mean(-1, keepdim=True).sqrt() + eps)


def layer_norm(x, weight, eps):
    c = x - x.mean(-1, keepdim=True)
    return weight * c / torch.sqrt(c.pow(2).mean(-1, keepdim=True) + eps)


def no_gain(x, weight, eps):
    return x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + eps)


def test_rms_norm(capsys, tmp_path_factory, monkeypatch):
    verify_check(checks.check_rms_norm, good_rms, [eps_outside, layer_norm, no_gain], capsys,
                 messages=["eps added outside the square root", "a LayerNorm", "gain (weight) left out"],
                 tmp_path_factory=tmp_path_factory, monkeypatch=monkeypatch, names_case=True)


# --- rotary ------------------------------------------------------------------------------------------

def good_rotary(x, positions, base):
    """Complex numbers: coordinate i and i + d/2 are the real and imaginary parts of one number."""
    e = x.shape[-1] // 2
    theta = positions.double()[:, None] * base ** (-torch.arange(e, dtype=torch.float64) * 2 / (2 * e))
    z = torch.complex(x[..., :e].double(), x[..., e:].double()) * torch.polar(torch.ones_like(theta), theta)[None, :, None]
    return torch.cat([z.real, z.imag], dim=-1).float()


def interleaved(x, positions, base):
    """A transposed rotary pair: pairs (0, 1), (2, 3), ... as in GPT-J."""
    e = x.shape[-1]
    ang = positions.float()[:, None] * base ** (-torch.arange(0, e, 2).float() / e)
    cos, sin = ang.cos()[None, :, None], ang.sin()[None, :, None]
    a, b = x[..., 0::2], x[..., 1::2]
    return torch.stack([a * cos - b * sin, a * sin + b * cos], -1).flatten(-2)


def wrong_sign(x, positions, base):
    return good_rotary(x, -positions, base)


def fixed_base(x, positions, base):
    return good_rotary(x, positions, 10000.0)


def courses_rotary(x, positions, base):  # right numbers, but the course's own function
    from toyattn.models.transformer import apply_rotary

    return apply_rotary(x, positions, base)


def test_rotary(capsys, tmp_path_factory, monkeypatch):
    verify_check(checks.check_rotary, good_rotary, [interleaved, wrong_sign, fixed_base], capsys,
                 messages=["interleaved layout", "wrong sign", "default base"],
                 tmp_path_factory=tmp_path_factory, monkeypatch=monkeypatch, names_case=True)


# --- grouped-query attention -------------------------------------------------------------------------

def good_gqa(q, k, v):
    b, p, h, e = q.shape
    group = h // k.shape[2]
    out = torch.empty_like(q)
    for head in range(h):  # a loop over heads, written out
        kh, vh = k[:, :, head // group], v[:, :, head // group]
        s = q[:, :, head] @ kh.transpose(1, 2) / math.sqrt(e)
        s = s + torch.full((p, p), float("-inf")).triu(1)
        out[:, :, head] = torch.softmax(s, -1) @ vh
    return out


def tiled(q, k, v):
    group = q.shape[2] // k.shape[2]
    return good_gqa_expanded(q, k.repeat(1, 1, group, 1), v.repeat(1, 1, group, 1))


def good_gqa_expanded(q, k, v):
    s = torch.einsum("bqhe,bkhe->bhqk", q, k) / math.sqrt(q.shape[-1])
    s = s.masked_fill(torch.ones(q.shape[1], q.shape[1], dtype=torch.bool).triu(1), float("-inf"))
    return torch.einsum("bhqk,bkhe->bqhe", torch.softmax(s, -1), v)


def no_mask(q, k, v):
    group = q.shape[2] // k.shape[2]
    k, v = k.repeat_interleave(group, 2), v.repeat_interleave(group, 2)
    s = torch.einsum("bqhe,bkhe->bhqk", q, k) / math.sqrt(q.shape[-1])
    return torch.einsum("bhqk,bkhe->bqhe", torch.softmax(s, -1), v)


def no_scale(q, k, v):
    return good_gqa(q * math.sqrt(q.shape[-1]), k, v)


def courses_attention(q, k, v):  # right numbers, but the models' own attention
    from types import SimpleNamespace

    from toyattn.models.attention import attend

    same = lambda t: t  # noqa: E731 - hook points that change nothing
    return attend(SimpleNamespace(hook_attn_scores=same, hook_pattern=same, hook_z=same), q, k, v)


def test_gqa_attention(capsys, tmp_path_factory, monkeypatch):
    verify_check(checks.check_gqa_attention, good_gqa, [tiled, no_mask, no_scale], capsys,
                 messages=["shared the wrong way", "no causal mask", "not divided by sqrt(d_head)"],
                 tmp_path_factory=tmp_path_factory, monkeypatch=monkeypatch, names_case=True)


# --- SwiGLU --------------------------------------------------------------------------------------------

def good_swiglu(x, W_gate, W_up, W_down):
    a = x @ W_gate
    return (a * torch.sigmoid(a) * (x @ W_up)) @ W_down


def up_gated(x, W_gate, W_up, W_down):
    return good_swiglu(x, W_up, W_gate, W_down)


def glu(x, W_gate, W_up, W_down):
    return (torch.sigmoid(x @ W_gate) * (x @ W_up)) @ W_down


def test_swiglu(capsys, tmp_path_factory, monkeypatch):
    verify_check(checks.check_swiglu, good_swiglu, [up_gated, glu], capsys,
                 messages=["up branch", "sigmoid gate"], tmp_path_factory=tmp_path_factory, monkeypatch=monkeypatch)


# --- direct logit attribution --------------------------------------------------------------------------

def good_dla(head_out, final_resid, gain, eps, W_U, targets):
    rms = final_resid.pow(2).mean(-1).add(eps).sqrt()  # [pos]
    cols = W_U.T[targets] * gain  # [pos, d]
    return (head_out * cols[:, None]).sum(-1) / rms[:, None]


def dla_no_scale(head_out, final_resid, gain, eps, W_U, targets):
    return (head_out * (W_U.T[targets] * gain)[:, None]).sum(-1)


def dla_no_gain(head_out, final_resid, gain, eps, W_U, targets):
    return good_dla(head_out, final_resid, torch.ones_like(gain), eps, W_U, targets)


def dla_norm_each(head_out, final_resid, gain, eps, W_U, targets):
    normed = head_out / head_out.pow(2).mean(-1, keepdim=True).add(eps).sqrt()
    return (normed * (W_U.T[targets] * gain)[:, None]).sum(-1)


def dla_eps_outside(head_out, final_resid, gain, eps, W_U, targets):
    rms = final_resid.pow(2).mean(-1, keepdim=True).sqrt() + eps
    return ((head_out / rms[:, None]) * (W_U.T[targets] * gain)[:, None]).sum(-1)


def test_logit_attribution(capsys, tmp_path_factory, monkeypatch):
    verify_check(checks.check_logit_attribution, good_dla, [dla_no_scale, dla_no_gain, dla_norm_each, dla_eps_outside],
                 capsys, messages=["scale 1/rms", "gain left out", "normed on its own", "outside the square root"],
                 tmp_path_factory=tmp_path_factory, monkeypatch=monkeypatch, names_case=True)


# --- patching one head -----------------------------------------------------------------------------------

def _patch(model, target, source, layer, head, positions):
    name = f"blocks.{layer}.attn.hook_z"
    _, cache = model.run_with_cache(source, names_filter=name)

    def hook(z, hook):
        keep = torch.zeros_like(z, dtype=torch.bool)
        keep[:, positions, head] = True
        return torch.where(keep, cache[name], z)

    with torch.no_grad():
        return model.run_with_hooks(target, fwd_hooks=[(name, hook)])


def good_patch(model, corrupted, clean, layer, head, position):
    return _patch(model, corrupted, clean, layer, head, position)


def every_position(model, corrupted, clean, layer, head, position):
    return _patch(model, corrupted, clean, layer, head, slice(None))


def one_too_early(model, corrupted, clean, layer, head, position):
    return _patch(model, corrupted, clean, layer, head, position % corrupted.shape[1] - 1)


def wrong_way(model, corrupted, clean, layer, head, position):
    return _patch(model, clean, corrupted, layer, head, position)


def leaky_patch(model, corrupted, clean, layer, head, position):
    """Right numbers, but the hook is never removed."""
    name = f"blocks.{layer}.attn.hook_z"
    _, cache = model.run_with_cache(clean, names_filter=name)

    def hook(z, hook):
        z = z.clone()
        z[:, position, head] = cache[name][:, position, head]
        return z

    model.hook_points[name].add_hook(hook)
    with torch.no_grad():
        return model(corrupted)


def test_patch_head(capsys, tmp_path_factory, monkeypatch):
    verify_check(checks.check_patch_head_at, good_patch, [every_position, one_too_early, wrong_way, leaky_patch], capsys,
                 messages=["every position", "one position too early", "wrong way round", "no hook left"],
                 tmp_path_factory=tmp_path_factory, monkeypatch=monkeypatch, names_case=False)


def test_the_rotary_check_holds_answers_to_transformers_own_function():
    """check_rotary's second reference is transformers' convention written out; here it is held to the real thing."""
    modeling = pytest.importorskip("transformers.models.llama.modeling_llama")
    from toyattn.checks.real_model import transformers_rotary

    x, positions, base = torch.randn(2, 5, 3, 8), torch.arange(4, 9), 100000.0
    inv_freq = 1.0 / base ** (torch.arange(0, 8, 2).float() / 8)
    emb = torch.cat([positions.float()[:, None] * inv_freq] * 2, dim=-1)
    q, _ = modeling.apply_rotary_pos_emb(x.transpose(1, 2), x.transpose(1, 2), emb.cos()[None], emb.sin()[None])
    torch.testing.assert_close(transformers_rotary(x, positions, base), q.transpose(1, 2), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(transformers_rotary(x, positions, base), good_rotary(x, positions, base), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("check, answer", [("check_rotary", courses_rotary), ("check_gqa_attention", courses_attention)])
def test_the_course_s_own_rotary_and_attention_are_refused(check, answer):
    """Right numbers from the course's own functions, which the exercise asks the student to write."""
    with pytest.raises(checks.CheckFailed, match="holds the course's answer"):
        getattr(checks, check)(answer)
