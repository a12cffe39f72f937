"""Lesson 1's exercise checks accept the solution and reject the stub and plausible mistakes, in class
and in grading, and name the recognisable mistakes."""

from __future__ import annotations

import math

import pytest
import torch
from check_helpers import verify_check

from toyattn import checks
from toyattn.checks.core import CheckFailed

pytestmark = pytest.mark.usefixtures("single_thread")


def good_mask(n_pos):
    return torch.ones(n_pos, n_pos, dtype=torch.bool).tril()


def mask_scores(scores):
    return scores.masked_fill(~good_mask(scores.shape[-1]), float("-inf"))


def good_attention(q, k, v):
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    pattern = torch.softmax(mask_scores(scores), dim=-1)
    return pattern @ v, pattern


def predict_next(cache, position):
    probs = torch.softmax(cache["hook_logits"][:, position], dim=-1)
    p, ids = probs.max(dim=-1)
    return ids, p


def good_edge(cache, query_pos, key_pos):
    return cache["hook_pattern"][:, query_pos, key_pos, None] * cache["hook_v"][:, key_pos]


def good_patch(model, tokens, source_tokens, key_pos, hook_name="hook_v"):
    _, cache = model.run_with_cache(source_tokens)

    def put_source_value(v, *, hook):
        v = v.clone()
        v[:, key_pos] = cache[hook_name][:, key_pos]
        return v

    return model.run_with_hooks(tokens, fwd_hooks=[(hook_name, put_source_value)])


def attention_variant(*, scale=True, mask=True, dim=-1, by_d=False):
    def attention(q, k, v):
        scores = q @ k.transpose(-2, -1)
        if scale:
            scores = scores / (q.shape[-1] if by_d else math.sqrt(q.shape[-1]))
        if mask:
            scores = mask_scores(scores)
        pattern = torch.softmax(scores, dim=dim)
        return pattern @ v, pattern

    return attention


def test_check_mask_scores(capsys, tmp_path_factory, monkeypatch):
    def other_fill(scores):  # a very negative number instead of -inf: the same weights, accepted
        return scores.masked_fill(~good_mask(scores.shape[-1]), -1e9)

    checks.check_mask_scores(other_fill)
    capsys.readouterr()
    verify_check(
        checks.check_mask_scores,
        mask_scores,
        [
            lambda s: s * good_mask(s.shape[-1]),  # multiplied by the mask: future scores 0, still weighted
            lambda s: s.masked_fill(~good_mask(s.shape[-1]).T, float("-inf")),  # upper triangle: hides the past
            lambda s: s.masked_fill(~good_mask(s.shape[-1]).tril(-1), float("-inf")),  # hides the diagonal too
            lambda s: torch.softmax(mask_scores(s), dim=-1),  # returns weights, not scores
            lambda s: s,  # nothing masked
            lambda s: s.masked_fill(~good_mask(s.shape[-1]), float("-inf")).tolist(),  # a list, not a tensor
        ],
        capsys,
        messages=["set to 0 (scores * mask?)", "the past was masked", "the diagonal was masked too",
                  "weights (after a softmax)", "nothing was masked", "expected one torch.Tensor"],
        tmp_path_factory=tmp_path_factory,
        monkeypatch=monkeypatch,
        names_case=True,
    )


def test_check_attention_forward(capsys, tmp_path_factory, monkeypatch):
    def mask_after_softmax(q, k, v):  # the research notebook's second mask, alone: rows no longer sum to 1
        scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
        pattern = torch.softmax(scores, dim=-1) * good_mask(q.shape[-2])
        return pattern @ v, pattern

    verify_check(
        checks.check_attention_forward,
        good_attention,
        [
            attention_variant(scale=False),
            attention_variant(by_d=True),
            attention_variant(mask=False),
            attention_variant(dim=-2),  # softmax over queries instead of keys
            mask_after_softmax,
            lambda q, k, v: good_attention(q, k, v)[0],  # returns z only
            lambda q, k, v: good_attention(q, k, v)[::-1],  # (pattern, z) swapped
            lambda q, k, v: (good_attention(q, k, v)[1] @ k, good_attention(q, k, v)[1]),  # weights times keys
        ],
        capsys,
        messages=["not divided by sqrt(d_head)", "divided by d_head instead", "no causal mask", "over the query axis",
                  None, "expected a pair (z, pattern)", None, "multiplied by the keys"],
        tmp_path_factory=tmp_path_factory,
        monkeypatch=monkeypatch,
        names_case=True,
    )


def test_check_predict_next(capsys, tmp_path_factory, monkeypatch):
    def logits_max(cache, p):
        values, ids = cache["hook_logits"][:, p].max(dim=-1)
        return ids, values

    verify_check(
        checks.check_predict_next,
        predict_next,
        [
            logits_max,  # logits, not probabilities
            lambda cache, p: torch.softmax(cache["hook_logits"][:, p], dim=0).max(dim=-1)[::-1],  # over the batch
            lambda cache, p: predict_next(cache, p - 1),  # off by one
            lambda cache, p: torch.softmax(cache["hook_z"][:, p], dim=-1).max(dim=-1)[::-1],  # no skip connection
            lambda cache, p: predict_next(cache, p)[::-1],  # (probs, ids)
            lambda cache, p: torch.softmax(cache["hook_logits"][:, p], dim=-1),  # all probabilities
        ],
        capsys,
        messages=["not a probability", "over the batch", "position - 1", "hook_z", "expected integer ids",
                  "expected a pair"],
        tmp_path_factory=tmp_path_factory,
        monkeypatch=monkeypatch,
        names_case=True,
    )


def test_check_edge_contribution(capsys, tmp_path_factory, monkeypatch):
    verify_check(
        checks.check_edge_contribution,
        good_edge,
        [
            lambda cache, q, k: cache["hook_v"][:, k],  # forgot the weight
            lambda cache, q, k: cache["hook_pattern"][:, k, q, None] * cache["hook_v"][:, k],  # transposed
            lambda cache, q, k: cache["hook_pattern"][:, q, k, None] * cache["hook_v"][:, q],  # value of the query
            lambda cache, q, k: cache["hook_attn_scores"][:, q, k, None] * cache["hook_v"][:, k],  # scores
            lambda cache, q, k: cache["hook_z"][:, q],  # the whole output
        ],
        capsys,
        messages=["the value alone", "read as [key, query]", "the value at the query's position", "the score (before",
                  "the whole output"],
        tmp_path_factory=tmp_path_factory,
        monkeypatch=monkeypatch,
        names_case=True,
    )


def _leaky_patch(model, tokens, source_tokens, key_pos):
    """Right numbers, but registers the hook directly and never removes it."""
    _, cache = model.run_with_cache(source_tokens)

    def put(v, *, hook):
        v = v.clone()
        v[:, key_pos] = cache["hook_v"][:, key_pos]
        return v

    model.hook_points["hook_v"].add_hook(put)
    return model(tokens)


def test_check_patch_value(capsys, tmp_path_factory, monkeypatch):
    verify_check(
        checks.check_patch_value,
        good_patch,
        [
            lambda model, tokens, source, key_pos: model(tokens),  # no patch at all
            lambda model, tokens, source, key_pos: model(source),  # the whole source run
            lambda model, tokens, source, key_pos: good_patch(model, tokens, source, (key_pos + 3) % tokens.shape[1]),
            lambda model, tokens, source, key_pos: good_patch(model, tokens, source, slice(None)),  # all positions
            lambda model, tokens, source, key_pos: good_patch(model, tokens, source, key_pos, "hook_k"),
            _leaky_patch,
            lambda model, tokens, source, key_pos: torch.softmax(good_patch(model, tokens, source, key_pos), dim=-1),
        ],
        capsys,
        messages=["the unpatched run", "the source run itself", "was patched instead of", "every position's value",
                  "hook_k was patched", "hooks still attached to ['hook_v']", "probabilities: return"],
        tmp_path_factory=tmp_path_factory,
        monkeypatch=monkeypatch,
        names_case=True,
    )


def test_patch_check_does_not_touch_the_callers_model():
    case = checks.check_patch_value.cases(0)[0]
    model = case.args[0]
    with pytest.raises(CheckFailed):
        checks.check_patch_value(_leaky_patch)
    assert not any(hp._forward_hooks for hp in model.hook_points.values())


def test_cases_are_fresh_per_seed_and_repeatable():
    for check in (checks.check_mask_scores, checks.check_attention_forward, checks.check_predict_next,
                  checks.check_edge_contribution, checks.check_patch_value):
        assert [c.name for c in check.cases(5)] == [c.name for c in check.cases(5)]
    a, b = checks.check_attention_forward.cases(1)[0].args[0], checks.check_attention_forward.cases(2)[0].args[0]
    assert a.shape != b.shape or not torch.equal(a, b)
    t1 = checks.check_patch_value.cases(1)[-1].args[1]
    t2 = checks.check_patch_value.cases(2)[-1].args[1]
    assert not torch.equal(t1, t2)
