"""Lesson 1's exercise checks: each accepts the solution, rejects the stub and plausible mistakes."""

from __future__ import annotations

import math

import pytest
import torch
from check_helpers import verify_check

from toyattn import checks
from toyattn.checks.core import CheckFailed


def good_mask(n_pos):
    return torch.ones(n_pos, n_pos, dtype=torch.bool).tril()


def good_attention(q, k, v):
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    scores = scores.masked_fill(~good_mask(q.shape[-2]), float("-inf"))
    pattern = torch.softmax(scores, dim=-1)
    return pattern @ v, pattern


def good_probs(cache, position):
    return torch.softmax(cache["hook_logits"][:, position], dim=-1)


def good_edge(cache, query_pos, key_pos):
    return cache["hook_pattern"][:, query_pos, key_pos, None] * cache["hook_v"][:, key_pos]


def good_patch(model, tokens, source_tokens, key_pos):
    _, cache = model.run_with_cache(source_tokens)

    def put_source_value(v, *, hook):
        v = v.clone()
        v[:, key_pos] = cache["hook_v"][:, key_pos]
        return v

    return model.run_with_hooks(tokens, fwd_hooks=[("hook_v", put_source_value)])


def attention_variant(*, scale=True, mask=True, dim=-1):
    def attention(q, k, v):
        scores = q @ k.transpose(-2, -1)
        if scale:
            scores = scores / math.sqrt(q.shape[-1])
        if mask:
            scores = scores.masked_fill(~good_mask(q.shape[-2]), float("-inf"))
        pattern = torch.softmax(scores, dim=dim)
        return pattern @ v, pattern

    return attention


def test_check_causal_mask(capsys):
    verify_check(
        checks.check_causal_mask,
        good_mask,
        [
            lambda n: torch.ones(n, n, dtype=torch.bool).triu(),  # upper triangle: sees the future
            lambda n: torch.ones(n, n, dtype=torch.bool).tril(-1),  # forgets the diagonal
            lambda n: torch.ones(n, n).tril(),  # float, not bool
            lambda n: [[j <= i for j in range(n)] for i in range(n)],  # a list
        ],
        capsys,
    )


def test_check_attention_forward(capsys):
    verify_check(
        checks.check_attention_forward,
        good_attention,
        [
            attention_variant(scale=False),
            attention_variant(mask=False),
            attention_variant(dim=-2),  # softmax over queries instead of keys
            lambda q, k, v: attention_variant()(q, k, v)[0],  # returns z only
            lambda q, k, v: good_attention(q, k, v)[::-1],  # (pattern, z) swapped
        ],
        capsys,
    )


def test_check_next_token_probs(capsys):
    verify_check(
        checks.check_next_token_probs,
        good_probs,
        [
            lambda cache, p: cache["hook_logits"][:, p],  # logits, not probabilities
            lambda cache, p: torch.softmax(cache["hook_logits"][:, p], dim=0),  # over the batch
            lambda cache, p: torch.softmax(cache["hook_logits"][:, p - 1], dim=-1),  # off by one
            lambda cache, p: torch.softmax(cache["hook_z"][:, p], dim=-1),  # forgot the skip connection
        ],
        capsys,
    )


def test_check_edge_contribution(capsys):
    verify_check(
        checks.check_edge_contribution,
        good_edge,
        [
            lambda cache, q, k: cache["hook_v"][:, k],  # forgot the weight
            lambda cache, q, k: cache["hook_pattern"][:, k, q, None] * cache["hook_v"][:, k],  # transposed
            lambda cache, q, k: cache["hook_pattern"][:, q, k, None] * cache["hook_v"][:, q],  # value of the query
        ],
        capsys,
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


def test_check_patch_value(capsys):
    verify_check(
        checks.check_patch_value,
        good_patch,
        [
            lambda model, tokens, source, key_pos: model(tokens),  # no patch at all
            lambda model, tokens, source, key_pos: model(source),  # the whole source run
            lambda model, tokens, source, key_pos: good_patch(model, tokens, source, 0),  # wrong position
            _leaky_patch,
        ],
        capsys,
    )


def test_leaky_patch_message_names_the_fix():
    with pytest.raises(CheckFailed, match="left hooks attached to \\['hook_v'\\]"):
        checks.check_patch_value(_leaky_patch)
