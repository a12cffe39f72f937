"""Checks for lesson 1's problem set (``solutions/01_attention_toy``): one causal attention head.

Each check runs the student's function on cases made fresh from the check's seed (random scores,
random queries and keys, small untrained models on random token batches and on the lesson's two
sentences) and compares with the reference in :mod:`toyattn.models.one_head` and
:mod:`toyattn.sentences.interventions`. A wrong answer that matches a known mistake is named in the message.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import numpy as np
import torch

from toyattn.checks.answers import Returned
from toyattn.checks.core import Case, CheckFailed, assert_close, exercise_check, torch_generator
from toyattn.checks.guards import no_hooks_left
from toyattn.models.attention import causal_mask
from toyattn.models.one_head import OneHeadAttention
from toyattn.sentences.corpus import ToyCorpus
from toyattn.sentences.interventions import edge_contribution, patch_activation

__all__ = [
    "check_mask_scores",
    "check_attention_forward",
    "check_predict_next",
    "check_edge_contribution",
    "check_patch_value",
]


def _item(got: Returned, i: int) -> Returned:
    return Returned((got.arrays[i],), (got.kinds[i],))


def _pair(got: Returned, what: str, names: str) -> None:
    if not got.is_tuple or len(got.arrays) != 2:
        n = f"a tuple of {len(got.arrays)}" if got.is_tuple else f"one value ({got.kind})"
        raise CheckFailed(f"{what}: expected a pair {names}, got {n}.")


# ---------------------------------------------------------------------------------------------- Ex 1


def _score_cases(rng: np.random.Generator) -> list[Case]:
    g = torch_generator(rng)
    n, m = int(rng.integers(3, 8)), int(rng.integers(4, 7))
    cases = []
    for shape in ((2, 5, 5), (1, 1, 1), (3, n, n), (m, m)):  # [..., q_pos, k_pos]
        cases.append(Case(f"scores of shape {list(shape)}", (3 * torch.randn(shape, generator=g),)))
    return cases


def _changed(a: torch.Tensor, scores: torch.Tensor, visible: torch.Tensor) -> str:
    idx = torch.nonzero(~torch.isclose(a.double(), scores.double()) & visible)[0]
    return (f"the score at index {tuple(idx.tolist())}, which its query may see, was changed: expected "
            f"{scores[tuple(idx)].item():.4g}, got {a[tuple(idx)].item():.4g} (scores on and below the diagonal "
            f"must stay as they are).")


def _mask_hint(a: torch.Tensor, scores: torch.Tensor) -> str:
    n = scores.shape[-1]
    hidden = torch.isinf(a) & (a < 0)
    diagonal = torch.eye(n, dtype=torch.bool).expand_as(a)
    strictly_past = causal_mask(n).tril(-1).expand_as(a)
    if hidden[diagonal].all() and not hidden[strictly_past].any():
        return " It looks like the diagonal was masked too: a query may read its own position (j = i)."
    if hidden[strictly_past].any():
        return (" It looks like the past was masked: query i may read keys j <= i (on and below the diagonal); "
                "the keys after it (j > i) are the ones to hide.")
    if torch.allclose(a.double().sum(-1), torch.ones(a.shape[:-1], dtype=torch.float64), atol=1e-4):
        return " It looks like weights (after a softmax): return the masked scores; the softmax comes after."
    return ""


@exercise_check(cases=_score_cases)
def check_mask_scores(case: Case, got: Returned) -> None:
    """``mask_fn(scores)`` (``[..., q_pos, k_pos]``) returns scores whose softmax over keys gives no weight to
    a key after its query and leaves every other score as it was (any way of masking that does this)."""
    (scores,) = case.args
    n = scores.shape[-1]
    what = f"masked {case.name}"
    if got.is_tuple or not got.is_tensor():
        raise CheckFailed(f"{what}: expected one torch.Tensor of scores, got {got.kind}.")
    a = torch.from_numpy(got.value.copy())
    if tuple(a.shape) != tuple(scores.shape):
        raise CheckFailed(f"{what}: expected shape {list(scores.shape)} (the shape of the scores), got {list(a.shape)}.")
    past = causal_mask(n)
    visible = past.expand_as(scores)
    # The visible scores must be the student's untouched input (so that the weights are the model's).
    if not torch.allclose(a[visible].double(), scores[visible].double(), rtol=1e-6, atol=1e-6):
        raise CheckFailed(f"{what}: {_changed(a, scores, visible)}{_mask_hint(a, scores)}")
    weights = torch.softmax(a.double(), dim=-1)
    leaked = weights.masked_fill(visible, 0).amax()
    if not leaked <= 1e-12:
        hint = ""
        future = a[~visible]
        if future.numel() and torch.all(future == 0):
            hint = (" It looks like the future scores were set to 0 (scores * mask?): e^0 = 1, so they still get "
                    "weight. Give them a score whose exponential is 0.")
        elif future.numel() and torch.allclose(future.double(), scores[~visible].double()):
            hint = " It looks like nothing was masked."
        raise CheckFailed(
            f"{what}: after a softmax over the keys, expected weight 0 on every key after its query, got "
            f"{leaked.item():.3g}.{hint}"
        )


# ---------------------------------------------------------------------------------------------- Ex 2


def _reference_attention(q, k, v, *, scale=True, mask=True, dim=-1, divide_by_d=False):
    d_head = q.shape[-1]
    scores = q.double() @ k.double().transpose(-2, -1)
    if scale:
        scores = scores / (d_head if divide_by_d else math.sqrt(d_head))
    if mask:
        scores = scores.masked_fill(~causal_mask(q.shape[-2]), float("-inf"))
    pattern = torch.softmax(scores, dim=dim)
    return pattern @ v.double(), pattern


def _qkv_cases(rng: np.random.Generator) -> list[Case]:
    g = torch_generator(rng)
    cases = []
    for b, n, d, dv, scale in (
        (2, 5, int(rng.integers(8, 24)), 7, 1.0),
        (1, 3, 4, 4, 1.0),
        (3, 6, 16, int(rng.integers(3, 9)), 6.0),
    ):
        q, k = (scale * torch.randn(b, n, d, generator=g) for _ in range(2))
        v = torch.randn(b, n, dv, generator=g)
        big = " (large scores)" if scale > 1 else ""
        cases.append(Case(f"batch {b}, pos {n}, d_head {d}, d_v {dv}{big}", (q, k, v)))
    return cases


@exercise_check(cases=_qkv_cases)
def check_attention_forward(case: Case, got: Returned) -> None:
    """``attention_fn(q, k, v)`` returns ``(z, pattern)``: causal scaled dot-product attention.

    q, k: ``[batch, pos, d_head]``; v: ``[batch, pos, d_v]``; z: ``[batch, pos, d_v]``;
    pattern: ``[batch, q_pos, k_pos]``.
    """
    q, k, v = case.args
    _pair(got, case.name, "(z, pattern)")
    z_ref, pattern_ref = _reference_attention(q, k, v)
    mistakes = {
        "the scores were not divided by sqrt(d_head)": dict(scale=False),
        "the scores were divided by d_head instead of sqrt(d_head)": dict(divide_by_d=True),
        "there is no causal mask: a query reads keys after it": dict(mask=False),
        "the softmax ran over the query axis (dim=-2): each query's weights over the keys must sum to 1": dict(dim=-2),
    }
    pattern_mistakes = {desc: (lambda kw=kw: _reference_attention(q, k, v, **kw)[1]) for desc, kw in mistakes.items()}
    pattern_mistakes["(pattern, z) was returned: the order is (z, pattern)"] = lambda: z_ref
    z_mistakes = {desc: (lambda kw=kw: _reference_attention(q, k, v, **kw)[0]) for desc, kw in mistakes.items()}
    z_mistakes["the weights were multiplied by the keys, not the values"] = lambda: pattern_ref @ k.double()
    assert_close(_item(got, 1), pattern_ref.float(), what=f"pattern for {case.name}", rtol=1e-4, atol=1e-5,
                 mistakes=pattern_mistakes)
    assert_close(_item(got, 0), z_ref.float(), what=f"z for {case.name}", rtol=1e-4, atol=1e-5, mistakes=z_mistakes)


# ---------------------------------------------------------------------------------------------- models


@contextlib.contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Torch's global RNG seeded inside, restored after (module initialisers use the global RNG)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def _models(rng: np.random.Generator) -> list[tuple[str, OneHeadAttention, torch.Tensor]]:
    """Small untrained models (seeded from ``rng``) with token batches: the lesson's two sentences, and
    random batches of random length."""
    corpus = ToyCorpus()
    sentences, _ = corpus.tensors("cpu")
    out = []
    for d_head, positions, batch in ((20, True, None), (int(rng.integers(4, 12)), True, 3), (8, False, 4)):
        with _seeded(int(rng.integers(2**31))):
            model = OneHeadAttention.from_corpus(corpus, d_head=d_head, positions=positions).eval()
        if batch is None:
            tokens, what = sentences, "the lesson's two sentences"
        else:
            tokens = torch.as_tensor(rng.integers(0, corpus.vocab_size, size=(batch, corpus.seq_len)))
            what = f"{batch} random sentences"
        out.append((f"model d_head {d_head}{'' if positions else ' without positions'}, {what}", model, tokens))
    return out


def _cache(model: OneHeadAttention, tokens: torch.Tensor) -> dict[str, torch.Tensor]:
    _, cache = model.run_with_cache(tokens)
    return dict(cache)


# ---------------------------------------------------------------------------------------------- Ex 3


def _prediction_cases(rng: np.random.Generator) -> list[Case]:
    cases = []
    for name, model, tokens in _models(rng):
        cache = _cache(model, tokens)
        for position in (int(rng.integers(1, tokens.shape[1] - 1)), 0, tokens.shape[1] - 1):
            cases.append(Case(f"{name}, position {position}", (cache, position)))
    return cases


@exercise_check(cases=_prediction_cases)
def check_predict_next(case: Case, got: Returned) -> None:
    """``predict_fn(cache, position)`` returns ``(token_ids, probs)``, ``[batch]`` each: per sentence, the token
    the model finds most likely to come after ``position``, and the probability it gives that token."""
    cache, position = case.args
    _pair(got, case.name, "(token_ids, probs)")
    probs = torch.softmax(cache["hook_logits"][:, position].double(), dim=-1)
    p_ref, ids_ref = probs.max(dim=-1)
    ids = _item(got, 0)
    if not np.issubdtype(ids.value.dtype, np.integer):
        raise CheckFailed(f"token ids for {case.name}: expected integer ids (e.g. from argmax), got {ids.kind}.")

    def from_(logits: torch.Tensor, dim: int = -1) -> tuple[torch.Tensor, torch.Tensor]:
        p = torch.softmax(logits.double(), dim=dim)
        return p.max(dim=-1)

    mistakes = {
        "the logits' largest value, not a probability: apply a softmax over the vocabulary first":
            lambda: (cache["hook_logits"][:, position].max(dim=-1).values, None),
        "a softmax over the batch (dim=0), not over the vocabulary": lambda: from_(cache["hook_logits"][:, position], 0),
        "the prediction at position - 1": lambda: from_(cache["hook_logits"][:, position - 1]),
        "the prediction at position + 1": lambda: from_(cache["hook_logits"][:, position + 1]),
        "hook_z, the head's output alone: the model's prediction is hook_logits (the head's output plus the "
        "skip connection)": lambda: from_(cache["hook_z"][:, position]),
    }
    assert_close(ids, ids_ref, what=f"token ids for {case.name}", rtol=0, atol=0,
                 mistakes={d: (lambda f=f: f()[1]) for d, f in mistakes.items()})
    assert_close(_item(got, 1), p_ref.float(), what=f"probabilities for {case.name}", rtol=1e-4, atol=1e-6,
                 mistakes={d: (lambda f=f: f()[0]) for d, f in mistakes.items()})


# ---------------------------------------------------------------------------------------------- Ex 4


def _edge_cases(rng: np.random.Generator) -> list[Case]:
    cases = []
    for name, model, tokens in _models(rng):
        cache = _cache(model, tokens)
        n = tokens.shape[1]
        q = int(rng.integers(2, n))
        for k in (int(rng.integers(0, q)), 1 if q > 1 else 0, q):
            cases.append(Case(f"{name}, query {q} reading key {k}", (cache, q, k)))
    return cases


@exercise_check(cases=_edge_cases)
def check_edge_contribution(case: Case, got: Returned) -> None:
    """``edge_fn(cache, query_pos, key_pos)`` returns ``pattern[:, q, k] * v[:, k]``, ``[batch, d_v]``: what the
    query reads from that key (summed over all keys it is the head's output ``z[:, q]``)."""
    cache, q, k = case.args
    pattern, v = cache["hook_pattern"], cache["hook_v"]
    assert_close(
        got, edge_contribution(cache, q, k), what=f"what position {q} reads from position {k} ({case.name})",
        rtol=1e-4, atol=1e-6,
        mistakes={
            "the value alone: what a query reads from a key is the key's value times the attention weight":
                lambda: v[:, k],
            "the pattern read as [key, query]: pattern[:, q, k] is the weight query q gives key k":
                lambda: pattern[:, k, q, None] * v[:, k],
            "the value at the query's position: the query reads the key's value": lambda: pattern[:, q, k, None] * v[:, q],
            "the score (before the softmax) times the value: the weight is the pattern, after the softmax":
                lambda: cache["hook_attn_scores"][:, q, k, None] * v[:, k],
            "the whole output z[q]: that is the sum over all keys": lambda: cache["hook_z"][:, q],
        },
    )


# ---------------------------------------------------------------------------------------------- Ex 5


def _patch_cases(rng: np.random.Generator) -> list[Case]:
    corpus = ToyCorpus()
    cases = []
    for name, model, tokens in _models(rng):
        if tokens.shape[0] == 2:  # the lesson's sentences: man and woman swapped in
            pairs = [(tokens[1:], tokens[:1], 1, "the woman sentence, the value of 'man'"),
                     (tokens[:1], tokens[1:], int(rng.integers(2, corpus.seq_len)), "the man sentence")]
        else:
            source = torch.as_tensor(rng.integers(0, corpus.vocab_size, size=tuple(tokens.shape)))
            pairs = [(tokens, source, int(rng.integers(0, tokens.shape[1] - 1)), "other random sentences")]
        for toks, src, key_pos, what in pairs:
            cases.append(Case(f"{name}: {what}, key position {key_pos}", (model, toks, src, key_pos)))
    return cases


@exercise_check(cases=_patch_cases, during=[no_hooks_left()])
def check_patch_value(case: Case, got: Returned) -> None:
    """``patch_fn(model, tokens, source_tokens, key_pos)`` returns the logits of ``tokens`` run with
    ``hook_v`` at ``key_pos`` copied from the ``source_tokens`` run, and leaves no hook behind."""
    model, tokens, source, key_pos = case.args
    n = tokens.shape[1]
    mistakes = {
        "the unpatched run: was the hook attached while the model ran?": lambda: model(tokens),
        "the source run itself: only the value at key_pos comes from the source": lambda: model(source),
        "every position's value was copied: only the one at key_pos": lambda: patch_activation(model, tokens, source, "hook_v"),
        "hook_k was patched instead of hook_v": lambda: patch_activation(model, tokens, source, "hook_k", positions=key_pos),
        "probabilities: return the patched run's logits (the model's output, before a softmax)":
            lambda: torch.softmax(patch_activation(model, tokens, source, "hook_v", positions=key_pos), dim=-1),
    }
    for p in range(n):
        if p != key_pos and not torch.equal(tokens[:, p], source[:, p]):  # patching an equal token changes nothing
            mistakes[f"position {p} was patched instead of {key_pos}"] = (
                lambda p=p: patch_activation(model, tokens, source, "hook_v", positions=p))
    with torch.no_grad():
        assert_close(got, patch_activation(model, tokens, source, "hook_v", positions=key_pos),
                     what=f"patched logits ({case.name})", rtol=1e-4, atol=1e-5, mistakes=mistakes)
