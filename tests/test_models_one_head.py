"""toyattn.models.one_head: lesson 1's one-head model: shapes, the causal, scaled pattern, the switches, errors."""

from __future__ import annotations

import math

import pytest
import torch
from lesson1_helpers import _untrained

from toyattn.models.attention import causal_mask
from toyattn.models.one_head import OneHeadAttention
from toyattn.sentences.corpus import ToyCorpus

CORPUS = ToyCorpus()


def test_forward_shapes_and_single_sequence():
    model = _untrained(d_head=10)
    inputs, _ = CORPUS.tensors("cpu")
    logits = model(inputs)
    assert logits.shape == (2, 5, 7)
    one = model(inputs[1])
    assert one.shape == (5, 7)
    torch.testing.assert_close(one, logits[1])
    assert model.W_Q.weight.shape == (10, 7) and model.W_V.weight.shape == (7, 7)


def test_pattern_is_causal_scaled_and_normalised():
    model = _untrained(d_head=20)
    inputs, _ = CORPUS.tensors("cpu")
    _, cache = model.run_with_cache(inputs)
    pattern, scores = cache["hook_pattern"], cache["hook_attn_scores"]
    upper = ~causal_mask(5)
    assert (pattern[:, upper] == 0).all()
    assert torch.isinf(scores[:, upper]).all()
    torch.testing.assert_close(pattern.sum(-1), torch.ones(2, 5))
    expected = cache["hook_q"] @ cache["hook_k"].transpose(-2, -1) / math.sqrt(20)
    torch.testing.assert_close(scores[:, ~upper], expected[:, ~upper])
    torch.testing.assert_close(cache["hook_z"], pattern @ cache["hook_v"])
    torch.testing.assert_close(cache["hook_logits"], cache["hook_z"] + cache["hook_resid_pre"])


def test_no_peeking_at_the_future():
    # Changing the last token must not change any earlier position's output.
    model = _untrained()
    a = CORPUS.encode("man ordered the chicken").unsqueeze(0)
    b = a.clone()
    b[0, -1] = CORPUS.token_id("beef")
    torch.testing.assert_close(model(a)[:, :-1], model(b)[:, :-1])
    assert not torch.allclose(model(a)[:, -1], model(b)[:, -1])


def test_switches():
    inputs, _ = CORPUS.tensors("cpu")
    no_pos = _untrained(positions=False)
    assert no_pos.pos_embed is None and "hook_pos_embed" not in no_pos.hook_points
    _, cache = no_pos.run_with_cache(inputs)
    torch.testing.assert_close(cache["hook_resid_pre"], no_pos.embed(inputs))
    no_skip = _untrained(skip=False)
    _, cache = no_skip.run_with_cache(inputs)
    torch.testing.assert_close(cache["hook_logits"], cache["hook_z"])


def test_bad_input_errors():
    model = _untrained()
    with pytest.raises(ValueError, match="5 positions"):
        model(torch.zeros(1, 6, dtype=torch.long))
    with pytest.raises(ValueError, match=r"0\.\.6"):
        model(torch.tensor([[0, 7]]))
    with pytest.raises(TypeError, match="integer ids"):
        model(torch.zeros(1, 3))
    with pytest.raises(TypeError, match="torch tensor"):
        model([0, 1, 2])
    with pytest.raises(ValueError, match="positive integer"):
        OneHeadAttention(d_head=0)


def test_tokens_on_another_device_give_a_clear_error():
    model = _untrained()
    with pytest.raises(ValueError, match="model is on cpu"):
        model(torch.zeros(1, 3, dtype=torch.long, device="meta"))
