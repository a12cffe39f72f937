"""Tests for lesson 1's one-head model and its training: shapes, the causal mask, the switches,
and (trained once per session, seeded) what the trained head predicts and where it looks."""

from __future__ import annotations

import math

import pytest
import torch
from lesson1_helpers import trained_one_head

from toyattn.corpus import ToyCorpus
from toyattn.models.one_head import OneHeadAttention, causal_mask
from toyattn.training import DEFAULT_RECIPE, Recipe, full_batch_loss, train, train_one_head

CORPUS = ToyCorpus()
THE = CORPUS.position_of("the")  # 3


@pytest.fixture(scope="module")
def trained():
    return trained_one_head()


def _untrained(**kwargs) -> OneHeadAttention:
    torch.manual_seed(0)
    return OneHeadAttention.from_corpus(CORPUS, **kwargs)


def test_causal_mask():
    assert causal_mask(3).tolist() == [[True, False, False], [True, True, False], [True, True, True]]


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


def test_training_is_deterministic_and_lowers_the_loss():
    recipe = Recipe(lr=3e-2, epochs=20)
    a = train_one_head(recipe=recipe, device="cpu", progress=False)
    b = train_one_head(recipe=recipe, device="cpu", progress=False)
    assert a.losses == b.losses and len(a.losses) == 20
    assert a.losses[-1] < 0.6 * a.losses[0]
    per_sentence = train_one_head(recipe=Recipe(lr=1e-3, epochs=5, full_batch=False), device="cpu", progress=False)
    assert len(per_sentence.losses) == 5


def test_train_stop_below_and_errors():
    model = _untrained()
    inputs, targets = CORPUS.tensors("cpu")
    losses = train(model, inputs, targets, DEFAULT_RECIPE, device="cpu", progress=False, stop_below=1.0)
    assert losses[-1] < 1.0 and all(x >= 1.0 for x in losses[:-1]) and len(losses) < DEFAULT_RECIPE.epochs
    with pytest.raises(ValueError, match="same shape"):
        train(model, inputs, targets[:, :3], device="cpu")
    with pytest.raises(ValueError, match="learning rate"):
        Recipe(lr=0, epochs=3)


def test_trained_model_predicts_chicken_and_beef(trained):
    probs = trained.model.probs(trained.inputs)[:, THE]  # [batch, vocab] after "the"
    predicted = [CORPUS.vocab[i] for i in probs.argmax(-1)]
    assert predicted == ["chicken", "beef"]
    assert probs.max(-1).values.min() > 0.9


def test_trained_the_row_looks_at_man_or_woman(trained):
    _, cache = trained.model.run_with_cache(trained.inputs)
    the_row = cache["hook_pattern"][:, THE]  # [batch, k_pos]
    assert the_row.argmax(-1).tolist() == [1, 1]  # position 1: man / woman
    assert [CORPUS.decode(trained.inputs[b])[1] for b in range(2)] == ["man", "woman"]


def test_trained_loss_near_its_floor(trained):
    # Position 0 (<ST>) cannot know whether man or woman follows: its best loss is ln 2, over 5 positions.
    floor = math.log(2) / 5
    loss = full_batch_loss(trained.model, trained.inputs, trained.targets)
    assert floor <= loss < floor + 0.02
    assert trained.losses[-1] < trained.losses[0]


def test_cpu_threads_is_restored():
    from toyattn.device import cpu_threads

    before = torch.get_num_threads()
    with pytest.raises(RuntimeError):
        with cpu_threads(1):
            assert torch.get_num_threads() == 1
            raise RuntimeError("boom")
    assert torch.get_num_threads() == before
    with pytest.raises(ValueError, match="positive integer"):
        with cpu_threads(0):
            pass


def test_tokens_on_another_device_give_a_clear_error():
    model = _untrained()
    with pytest.raises(ValueError, match="model is on cpu"):
        model(torch.zeros(1, 3, dtype=torch.long, device="meta"))


@pytest.mark.gpu
def test_trains_on_gpu_like_on_cpu():
    gpu = train_one_head(device="cuda", progress=False)
    assert next(gpu.model.parameters()).device.type == "cuda"
    probs = gpu.model.probs(gpu.inputs)[:, THE]
    assert [CORPUS.vocab[i] for i in probs.argmax(-1).tolist()] == ["chicken", "beef"]
    cpu = trained_one_head()
    assert abs(gpu.losses[-1] - cpu.losses[-1]) < 0.01
