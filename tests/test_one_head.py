"""Tests for lesson 1's one-head model and its training: shapes, the causal mask, the switches,
and what every trained run that solves the task predicts and where it looks (many seeds, 1 and 2
threads, float32 and float64: see lesson1_helpers)."""

from __future__ import annotations

import math

import pytest
import torch
from lesson1_helpers import SEEDS, SETTINGS, SUBJECT, all_runs, solved_runs, stuck_runs

from toyattn.models.attention import causal_mask
from toyattn.models.one_head import OneHeadAttention
from toyattn.sentences.corpus import ToyCorpus
from toyattn.sentences.training import DEFAULT_RECIPE, Recipe, full_batch_loss, train, train_one_head

CORPUS = ToyCorpus()
THE = CORPUS.position_of("the")  # 3
CHICKEN, BEEF = CORPUS.token_id("chicken"), CORPUS.token_id("beef")


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


def test_only_some_seeds_solve_the_task_under_every_setting():
    # Lesson 1, section 9: "only some seeds solve it". Under every setting some seeds solve it and some get stuck.
    for dtype, threads, seeds in SETTINGS:
        solved = [r.solved for r in all_runs() if (r.dtype, r.threads) == (dtype, threads)]
        assert len(solved) == len(seeds)
        assert 0 < sum(solved) < len(solved), (dtype, threads, solved)


def test_every_solved_run_is_confident_everywhere_it_can_be():
    # Solving the task with the default recipe means reaching the loss floor: position 0 splits 50/50
    # between man and woman (the floor), every other position is sharp (lesson 1, section 4).
    inputs, targets = CORPUS.tensors("cpu")
    floor = math.log(2) / 5
    for run in solved_runs():
        probs = run.model.probs(inputs)  # [batch, pos, vocab]
        right = probs.gather(-1, targets[..., None])[..., 0]  # p(correct next token)
        assert right[:, 1:].min() > 0.9, run.label
        man_woman = probs[:, 0, [CORPUS.token_id("man"), CORPUS.token_id("woman")]]
        assert ((man_woman - 0.5).abs() < 0.1).all(), run.label
        loss = full_batch_loss(run.model, inputs, targets)
        assert floor <= loss < floor + 0.02, run.label
        assert run.losses[-1] < run.losses[0]


def test_in_every_solved_run_the_reads_position_1_in_at_least_one_sentence():
    # The query of "the" and the keys/values at positions 0, 2, 3 are the same in both sentences, so
    # "the" can only tell them apart through position 1: it must put clear weight there in at least one
    # sentence. It need not in both (some runs read "man" and default to beef when it is absent).
    inputs, _ = CORPUS.tensors("cpu")
    both = 0
    for run in solved_runs():
        _, cache = run.model.run_with_cache(inputs)
        for name in ("hook_q", "hook_k", "hook_v"):  # same token, same position: same vector
            torch.testing.assert_close(cache[name][0, [0, 2, 3]], cache[name][1, [0, 2, 3]], msg=run.label)
        weight = cache["hook_pattern"][:, THE, SUBJECT]  # [batch]
        assert weight.max() > 0.25, run.label
        both += bool((weight > 0.5).all())
    assert 0 < both < len(solved_runs())  # both happen: reading position 1 in one sentence or in both


def test_stuck_runs_lock_the_row_of_the_onto_one_shared_token():
    # Lesson 1, section 9: a stuck run's "the" puts nearly all its weight on one position holding the same
    # token in both sentences (not position 1), and the loss sits at (ln 2 + ln 2) / 5.
    inputs, targets = CORPUS.tensors("cpu")
    assert stuck_runs()
    for run in stuck_runs():
        _, cache = run.model.run_with_cache(inputs)
        row = cache["hook_pattern"][:, THE]  # [batch, k_pos]
        top = row.argmax(-1)
        assert top[0] == top[1] != SUBJECT, run.label
        assert row.amax(-1).min() > 0.9, run.label
        loss = full_batch_loss(run.model, inputs, targets)
        assert abs(loss - 2 * math.log(2) / 5) < 0.01, run.label


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
def test_trains_on_gpu():
    # A GPU may train a seed to another solution than the CPU, or get it stuck: the claims that hold for
    # every solved run are checked, not the CPU's numbers.
    floor = math.log(2) / 5
    runs = [train_one_head(seed=seed, device="cuda", progress=False) for seed in SEEDS]
    assert all(next(r.model.parameters()).device.type == "cuda" for r in runs)
    solved = [r for r in runs if r.model(r.inputs)[:, THE].argmax(-1).tolist() == [CHICKEN, BEEF]]
    assert 0 < len(solved) < len(runs)
    for r in solved:
        assert floor <= full_batch_loss(r.model, r.inputs, r.targets) < floor + 0.02
