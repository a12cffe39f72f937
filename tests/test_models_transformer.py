"""Tests for toyattn.models.transformer: shapes, hook points, masking, rotary, per-head weights."""

from __future__ import annotations

import math

import pytest
import torch

from toyattn.models.transformer import Transformer, TransformerConfig, apply_rotary


def make(**kw) -> Transformer:
    torch.manual_seed(0)
    base = dict(vocab_size=11, max_len=16, d_model=16, n_layers=2, n_heads=2)
    base.update(kw)
    return Transformer(TransformerConfig(**base)).eval()


def tokens(batch: int = 3, n_pos: int = 9, vocab: int = 11, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, vocab, (batch, n_pos), generator=torch.Generator().manual_seed(seed))


def test_config_defaults_fill_d_head_and_d_mlp():
    cfg = TransformerConfig(vocab_size=5, max_len=8, d_model=24, n_heads=3)
    assert cfg.d_head == 8 and cfg.d_mlp == 96


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(d_model=10, n_heads=3), "not divisible"),
        (dict(d_model=6, n_heads=2), "d_head must be even"),
        (dict(positions="sinusoidal"), "positions must be one of"),
        (dict(vocab_size=0), "vocab_size"),
        (dict(dropout=1.5), "dropout"),
    ],
)
def test_config_rejects_bad_values_with_a_clear_message(kw, match):
    base = dict(vocab_size=5, max_len=8, d_model=16)
    base.update(kw)
    with pytest.raises(ValueError, match=match):
        TransformerConfig(**base)


def test_forward_shapes_and_weight_layout():
    model = make()
    logits = model(tokens())
    assert logits.shape == (3, 9, 11)
    attn = model.blocks[1].attn
    assert model.embed.W_E.shape == (11, 16)
    assert attn.W_Q.shape == attn.W_K.shape == attn.W_V.shape == (2, 16, 8)
    assert attn.W_O.shape == (2, 8, 16)
    assert attn.b_Q.shape == (2, 8) and attn.b_O.shape == (16,)


def test_hook_points_are_named_and_cached_with_documented_shapes():
    model = make(mlp=True, positions="learned")
    _, cache = model.run_with_cache(tokens())
    expected = {
        "hook_embed": (3, 9, 16),
        "hook_pos_embed": (9, 16),
        "blocks.0.hook_resid_pre": (3, 9, 16),
        "blocks.1.attn.hook_q": (3, 9, 2, 8),
        "blocks.1.attn.hook_k": (3, 9, 2, 8),
        "blocks.1.attn.hook_v": (3, 9, 2, 8),
        "blocks.1.attn.hook_attn_scores": (3, 2, 9, 9),
        "blocks.1.attn.hook_pattern": (3, 2, 9, 9),
        "blocks.1.attn.hook_z": (3, 9, 2, 8),
        "blocks.0.hook_attn_out": (3, 9, 16),
        "blocks.0.hook_mlp_out": (3, 9, 16),
        "blocks.1.hook_resid_post": (3, 9, 16),
    }
    for name, shape in expected.items():
        assert tuple(cache[name].shape) == shape, name
    assert "hook_pos_embed" not in make().hook_points
    assert "blocks.0.hook_mlp_out" not in make().hook_points
    patterns = cache["blocks.0.attn.hook_pattern"]
    torch.testing.assert_close(patterns.sum(-1), torch.ones(3, 2, 9))


def test_causal_mask_hides_the_future_and_bidirectional_does_not():
    x = tokens(1, 8)
    y = x.clone()
    y[0, -1] = (y[0, -1] + 1) % 11
    causal = make()
    with torch.no_grad():
        torch.testing.assert_close(causal(x)[:, :-1], causal(y)[:, :-1])
        pattern = causal.run_with_cache(x)[1]["blocks.0.attn.hook_pattern"]
    assert torch.all(pattern[0, :, 0, 1:] == 0)
    bidir = make(causal=False)
    with torch.no_grad():
        assert not torch.allclose(bidir(x)[:, 0], bidir(y)[:, 0])


def test_pattern_recomputed_from_per_head_weights():
    """The TransformerLens convention: scores_h = (x W_Q[h] + b_Q) (x W_K[h] + b_K)^T / sqrt(d_head)."""
    model = make(positions="none", layer_norm=False)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))  # make the biases non-zero too
        x = tokens()
        _, cache = model.run_with_cache(x)
        attn = model.blocks[1].attn
        resid = cache["blocks.1.hook_resid_pre"]
        for h in range(2):
            q = resid @ attn.W_Q[h] + attn.b_Q[h]
            k = resid @ attn.W_K[h] + attn.b_K[h]
            scores = q @ k.transpose(-1, -2) / math.sqrt(8)
            scores = scores.masked_fill(torch.ones(9, 9, dtype=torch.bool).triu(1), float("-inf"))
            torch.testing.assert_close(cache["blocks.1.attn.hook_pattern"][:, h], scores.softmax(-1))
        z = cache["blocks.1.attn.hook_z"]
        out = torch.einsum("bphe,hed->bpd", z, attn.W_O) + attn.b_O
        torch.testing.assert_close(cache["blocks.1.hook_attn_out"], out)


def test_rotary_scores_depend_on_relative_distance_only():
    g = torch.Generator().manual_seed(0)
    q = torch.randn(1, 1, 1, 8, generator=g)
    k = torch.randn(1, 1, 1, 8, generator=g)

    def score(p: int, s: int) -> float:
        qp = apply_rotary(q, torch.tensor([p]))
        ks = apply_rotary(k, torch.tensor([s]))
        return float((qp * ks).sum())

    assert score(5, 2) == pytest.approx(score(13, 10), abs=1e-5)
    assert score(5, 2) != pytest.approx(score(5, 3), abs=1e-3)
    # A rotation keeps lengths.
    torch.testing.assert_close(apply_rotary(q, torch.tensor([7])).norm(), q.norm())


def test_rotary_model_is_shift_invariant_without_other_position_signal():
    """With rotary positions only, attention depends on distances: bidirectional attention scores of
    a sequence and of the same sequence one position later agree on the shared part."""
    model = make(causal=False, n_layers=1)
    x = tokens(1, 6)
    padded = torch.cat([x[:, :1], x], dim=1)  # one extra token in front
    with torch.no_grad():
        _, c1 = model.run_with_cache(x)
        _, c2 = model.run_with_cache(padded)
    torch.testing.assert_close(
        c1["blocks.0.attn.hook_attn_scores"], c2["blocks.0.attn.hook_attn_scores"][:, :, 1:, 1:], atol=1e-4, rtol=1e-4
    )


@pytest.mark.parametrize(
    "bad, err, match",
    [
        (torch.zeros(5, dtype=torch.long), ValueError, "batch dimension"),
        (torch.zeros(1, 5), TypeError, "integer ids"),
        (torch.full((1, 5), 11), ValueError, r"\[0, 11\)"),
        (torch.zeros(1, 17, dtype=torch.long), ValueError, "max_len=16"),
        ([[1, 2]], TypeError, "torch.Tensor"),
    ],
)
def test_bad_tokens_get_clear_errors(bad, err, match):
    with pytest.raises(err, match=match):
        make()(bad)


def test_rejects_non_config():
    with pytest.raises(TypeError, match="TransformerConfig"):
        Transformer(dict(vocab_size=3, max_len=4))


def test_a_few_steps_of_training_lower_the_loss():
    model = make().train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    x = tokens(8, 10)
    losses = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: one thread avoids slow thread hand-offs on a busy machine
    try:
        for _ in range(30):
            logits = model(x[:, :-1])
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, 11), x[:, 1:].reshape(-1))
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
    finally:
        torch.set_num_threads(threads)
    assert losses[-1] < 0.5 * losses[0]


@pytest.mark.gpu
def test_runs_on_gpu():
    model = make().to("cuda")
    assert model(tokens().to("cuda")).device.type == "cuda"
    with pytest.raises(ValueError, match="model.device"):
        model(tokens())
