"""Tests for toyattn.interventions: on the trained lesson-1 model (trained once per session), patching
what "the" reads from "man" into the "woman" run turns beef into chicken, and cutting that edge
collapses the choice; on untrained models, the interventions do exactly what they say."""

from __future__ import annotations

import pytest
import torch
from lesson1_helpers import trained_one_head

from toyattn.corpus import ToyCorpus
from toyattn.interventions import ablate_edge, edge_contribution, patch_activation, patch_edge
from toyattn.models.one_head import OneHeadAttention

CORPUS = ToyCorpus()
THE, SUBJECT = CORPUS.position_of("the"), CORPUS.position_of("man")  # 3, 1
CHICKEN, BEEF = CORPUS.token_id("chicken"), CORPUS.token_id("beef")


@pytest.fixture(scope="module")
def trained():
    t = trained_one_head()
    return t.model, t.inputs[:1], t.inputs[1:]  # model, man sentence, woman sentence


@pytest.fixture
def untrained():
    torch.manual_seed(3)
    return OneHeadAttention.from_corpus(CORPUS)


def _after_the(logits: torch.Tensor) -> torch.Tensor:
    return torch.softmax(logits[:, THE], dim=-1)  # [batch, vocab]


def _no_hooks(model) -> bool:
    return all(not hp._forward_hooks for hp in model.hook_points.values())


def test_patching_the_edge_turns_beef_into_chicken(trained):
    model, man, woman = trained
    assert _after_the(model(woman)).argmax(-1).item() == BEEF
    patched = _after_the(patch_edge(model, woman, man, THE, SUBJECT))
    assert patched.argmax(-1).item() == CHICKEN
    assert patched[0, CHICKEN] > 0.9
    # and the other way round
    assert _after_the(patch_edge(model, man, woman, THE, SUBJECT)).argmax(-1).item() == BEEF
    assert _no_hooks(model)


def test_patching_an_uninformative_edge_changes_nothing(trained):
    model, man, woman = trained
    # <ST> is the same token at the same place in both sentences: its value vector is identical, only
    # its (tiny) weight differs a little, so patching its edge leaves the prediction where it was.
    patched, clean = patch_edge(model, woman, man, THE, 0), model(woman).detach()
    torch.testing.assert_close(patched[:, :THE], clean[:, :THE])  # other positions exactly untouched
    torch.testing.assert_close(patched, clean, atol=1e-2, rtol=0)
    assert _after_the(patched).argmax(-1).item() == BEEF


def test_patching_the_value_of_man_turns_beef_into_chicken(trained):
    model, man, woman = trained
    patched = _after_the(patch_activation(model, woman, man, "hook_v", positions=SUBJECT))
    assert patched.argmax(-1).item() == CHICKEN


def test_ablating_the_edge_collapses_the_choice(trained):
    model, man, woman = trained
    for sentence in (man, woman):
        clean = _after_the(model(sentence))
        assert abs(clean[0, CHICKEN] - clean[0, BEEF]) > 0.8  # a confident choice
        cut = _after_the(ablate_edge(model, sentence, THE, SUBJECT))
        assert abs(cut[0, CHICKEN] - cut[0, BEEF]) < 0.1  # no longer able to choose
    # Without the edge the two sentences look the same to "the".
    torch.testing.assert_close(
        _after_the(ablate_edge(model, man, THE, SUBJECT)), _after_the(ablate_edge(model, woman, THE, SUBJECT)),
        atol=0.02, rtol=0,
    )
    assert _no_hooks(model)


def test_ablate_edge_modes(untrained):
    inputs = CORPUS.tensors("cpu")[0]
    _, cache = untrained.run_with_cache(inputs)
    zero = ablate_edge(untrained, inputs, 3, 1, mode="zero")
    expected = cache["hook_logits"].clone()
    expected[:, 3] -= edge_contribution(cache, 3, 1)  # the edge's term disappears from z[3]
    torch.testing.assert_close(zero, expected)
    masked = ablate_edge(untrained, inputs, 3, 1, mode="mask")
    torch.testing.assert_close(masked[:, :3], cache["hook_logits"][:, :3])  # other rows untouched
    # With the edge masked, row 3 renormalises over keys 0, 2, 3: recompute it by hand.
    scores = cache["hook_attn_scores"][:, 3].clone()
    scores[:, 1] = float("-inf")
    z3 = torch.softmax(scores, -1)[:, None] @ cache["hook_v"]
    torch.testing.assert_close(masked[:, 3], z3[:, 0] + cache["hook_resid_pre"][:, 3])


def test_edge_contributions_sum_to_z(untrained):
    inputs = CORPUS.tensors("cpu")[0]
    _, cache = untrained.run_with_cache(inputs)
    total = sum(edge_contribution(cache, 4, k) for k in range(5))
    torch.testing.assert_close(total, cache["hook_z"][:, 4])


def test_patch_activation_all_positions_equals_source_for_that_hook(untrained):
    inputs = CORPUS.tensors("cpu")[0]
    man, woman = inputs[:1], inputs[1:]
    # Patching the whole residual input is the same as running the source sentence.
    torch.testing.assert_close(patch_activation(untrained, woman, man, "hook_resid_pre"), untrained(man).detach())
    torch.testing.assert_close(patch_activation(untrained, woman, man, "hook_v", positions=[0, 2, 3]),
                               untrained(woman).detach())  # same tokens there: nothing changes


def test_bad_arguments(untrained):
    inputs = CORPUS.tensors("cpu")[0]
    with pytest.raises(ValueError, match="after query_pos"):
        ablate_edge(untrained, inputs, 1, 3)
    with pytest.raises(ValueError, match="outside the sequence"):
        ablate_edge(untrained, inputs, 7, 1)
    with pytest.raises(ValueError, match="mode must be"):
        ablate_edge(untrained, inputs, 3, 1, mode="drop")
    with pytest.raises(ValueError, match="same shape"):
        patch_edge(untrained, inputs, inputs[:1], 3, 1)
    with pytest.raises(KeyError, match="No hook point named 'hook_vv'"):
        patch_activation(untrained, inputs, inputs, "hook_vv")
    with pytest.raises(KeyError, match="lacks"):
        edge_contribution({"hook_v": torch.zeros(1, 5, 7)}, 3, 1)
    assert _no_hooks(untrained)
