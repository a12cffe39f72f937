"""Tests for the foundation's toyattn.hooks, on lesson 1's one-head model: caching with the documented
shapes, temporary hooks that are always removed (also when a hook raises), replacement hooks, and
clear errors for unknown hook names and for hooks that return the wrong kind of tensor."""

from __future__ import annotations

import re

import pytest
import torch

import toyattn.models.one_head as one_head_module
from toyattn.hooks import HookPoint
from toyattn.models.one_head import OneHeadAttention
from toyattn.sentences.corpus import ToyCorpus


def test_hook_returning_an_integer_tensor_is_caught_at_the_hook():
    point = HookPoint()
    point.name = "blocks.0.hook_pattern"
    point.add_hook(lambda act, hook: torch.zeros(act.shape, dtype=torch.long))
    with pytest.raises(TypeError, match=r"returned a torch.int64 tensor where the activation is torch.float32"):
        point(torch.ones(2, 3))


CORPUS = ToyCorpus()


@pytest.fixture
def model() -> OneHeadAttention:
    torch.manual_seed(0)
    return OneHeadAttention.from_corpus(CORPUS, d_head=12)


@pytest.fixture
def inputs() -> torch.Tensor:
    return CORPUS.tensors("cpu")[0]


def _attached(model) -> dict[str, int]:
    return {name: len(hp._forward_hooks) for name, hp in model.hook_points.items() if hp._forward_hooks}


def _documented_shapes() -> dict[str, list[str]]:
    """The hook table in one_head's module docstring: name -> symbolic shape, e.g. ['batch', 'pos', 'd_head']."""
    rows = re.findall(r"``(hook_\w+)``\s+``\[([^\]]+)\]``", one_head_module.__doc__)
    return {name: [d.strip() for d in dims.split(",")] for name, dims in rows}


def test_cached_shapes_match_the_documentation(model, inputs):
    documented = _documented_shapes()
    assert set(documented) == set(model.hook_points), "every hook point is documented, and only those"
    _, cache = model.run_with_cache(inputs)
    assert set(cache) == set(model.hook_points)
    sizes = {"batch": 2, "pos": 5, "q_pos": 5, "k_pos": 5, "d_model": 7, "vocab_size": 7, "d_head": 12}
    for name, dims in documented.items():
        assert tuple(cache[name].shape) == tuple(sizes[d] for d in dims), name


def test_cache_is_detached_and_does_not_change_on_rerun(model, inputs):
    _, cache = model.run_with_cache(inputs)
    before = cache["hook_q"].clone()
    assert not cache["hook_q"].requires_grad
    with torch.no_grad():
        model.W_Q.weight.mul_(2.0)
    model(inputs)
    torch.testing.assert_close(cache["hook_q"], before)
    assert _attached(model) == {}


def test_names_filter_forms(model, inputs):
    _, one = model.run_with_cache(inputs, names_filter="hook_pattern")
    assert set(one) == {"hook_pattern"}
    _, some = model.run_with_cache(inputs, names_filter=["hook_q", "hook_k"])
    assert set(some) == {"hook_q", "hook_k"}
    _, pred = model.run_with_cache(inputs, names_filter=lambda n: n.startswith("hook_attn") or n == "hook_z")
    assert set(pred) == {"hook_attn_scores", "hook_z"}
    _, on_cpu = model.run_with_cache(inputs, names_filter="hook_v", device="cpu")
    assert on_cpu["hook_v"].device.type == "cpu"


def test_output_of_run_with_cache_matches_plain_forward(model, inputs):
    out, _ = model.run_with_cache(inputs)
    torch.testing.assert_close(out, model(inputs))


def test_hooks_removed_when_a_hook_raises(model, inputs):
    def broken(t, *, hook):
        raise RuntimeError("boom in " + hook.name)

    with pytest.raises(RuntimeError, match="boom in hook_pattern"):
        with model.hooks([("hook_pattern", broken), ("hook_q", lambda t, *, hook: None)]):
            model(inputs)
    assert _attached(model) == {}
    with pytest.raises(RuntimeError, match="boom"):
        model.run_with_hooks(inputs, fwd_hooks=[("hook_z", broken)])
    assert _attached(model) == {}
    model(inputs)  # the model works normally afterwards


def test_hooks_removed_when_the_block_raises(model, inputs):
    with pytest.raises(ZeroDivisionError):
        with model.hooks([("hook_v", lambda t, *, hook: None)]):
            assert _attached(model) == {"hook_v": 1}
            1 / 0  # noqa: B018
    assert _attached(model) == {}


def test_hooks_removed_when_a_later_name_is_bad(model):
    # The first hook is attached before the second name fails: it must not stay behind.
    with pytest.raises(KeyError):
        with model.hooks([("hook_q", lambda t, *, hook: None), ("hook_nope", lambda t, *, hook: None)]):
            pass
    assert _attached(model) == {}


def test_replacement_hook_changes_the_output(model, inputs):
    clean = model(inputs)

    def uniform(pattern, *, hook):
        # Uniform attention over the visible keys: row i spreads 1/(i+1) over keys 0..i.
        mask = model.mask[: pattern.shape[-1], : pattern.shape[-1]].float()
        return (mask / mask.sum(-1, keepdim=True)).expand_as(pattern)

    patched = model.run_with_hooks(inputs, fwd_hooks=[("hook_pattern", uniform)])
    assert not torch.allclose(patched, clean)
    torch.testing.assert_close(patched[:, 0], clean[:, 0])  # position 0 attends to itself either way
    _, cache = model.run_with_cache(inputs)
    expected_z = (model.mask.float() / model.mask.float().sum(-1, keepdim=True)) @ cache["hook_v"]
    torch.testing.assert_close(patched, expected_z + cache["hook_resid_pre"])  # logits = z + skip
    torch.testing.assert_close(model(inputs), clean)  # and it is gone afterwards


def test_replacement_with_wrong_shape_is_a_clear_error(model, inputs):
    with pytest.raises(ValueError, match=r"must return None or a tensor of shape \(2, 5, 5\)"):
        model.run_with_hooks(inputs, fwd_hooks=[("hook_pattern", lambda t, *, hook: t[:, 0])])
    assert _attached(model) == {}


def test_hook_sees_its_name(model, inputs):
    seen = []
    model.run_with_hooks(inputs, fwd_hooks=[(lambda n: n.startswith("hook_"), lambda t, *, hook: seen.append(hook.name))])
    assert seen == list(model.hook_points)  # forward order equals definition order in this model


def test_bad_names_list_the_hook_points(model, inputs):
    with pytest.raises(KeyError, match="No hook point named 'hook_patern'. Hook points: hook_embed, .*hook_pattern"):
        model.run_with_hooks(inputs, fwd_hooks=[("hook_patern", lambda t, *, hook: None)])
    with pytest.raises(KeyError, match="hook_qq"):
        model.run_with_cache(inputs, names_filter=["hook_q", "hook_qq"])
    with pytest.raises(KeyError, match="matches no hook point"):
        model.run_with_cache(inputs, names_filter=lambda n: n.startswith("blocks."))
    no_pos = OneHeadAttention.from_corpus(CORPUS, positions=False)
    with pytest.raises(KeyError, match="No hook point named 'hook_pos_embed'"):
        no_pos.run_with_cache(inputs, names_filter="hook_pos_embed")


def test_empty_names_filter_gives_an_empty_cache(model, inputs):
    out, cache = model.run_with_cache(inputs, names_filter=[])
    assert cache == {}
    torch.testing.assert_close(out, model(inputs).detach())
