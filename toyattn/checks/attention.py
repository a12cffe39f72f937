"""Checks for lesson 1's problem set (``solutions/01_attention_toy``): one causal attention head.

Each check runs the student's function on several cases and compares with the reference in
:mod:`toyattn.models.one_head` and :mod:`toyattn.interventions`. Models in the checks are small,
seeded and untrained (their numbers are arbitrary but the same every run), so the checks are fast.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from ..corpus import ToyCorpus
from ..interventions import edge_contribution, patch_activation
from ..models.one_head import OneHeadAttention, causal_mask
from .core import CheckFailed, assert_close, call_student, legacy_check

__all__ = [
    "check_causal_mask",
    "check_attention_forward",
    "check_next_token_probs",
    "check_edge_contribution",
    "check_patch_value",
]


def _reference_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    n_pos = q.shape[-2]
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    scores = scores.masked_fill(~causal_mask(n_pos), float("-inf"))
    pattern = torch.softmax(scores, dim=-1)
    return pattern @ v, pattern


def _models_and_tokens() -> list[tuple[str, OneHeadAttention, torch.Tensor]]:
    """Seeded untrained models on the lesson's two sentences (and one reversed batch)."""
    corpus = ToyCorpus()
    inputs, _ = corpus.tensors("cpu")
    cases = []
    for seed, d_head, positions in ((0, 20, True), (1, 10, True), (2, 8, False)):
        torch.manual_seed(seed)
        model = OneHeadAttention.from_corpus(corpus, d_head=d_head, positions=positions).eval()
        cases.append((f"seed {seed}, d_head {d_head}, positions={positions}", model, inputs))
    return cases


def _no_hooks_left(model: OneHeadAttention, fname: str) -> None:
    left = [name for name, hp in model.hook_points.items() if hp._forward_hooks]
    if left:
        raise CheckFailed(
            f"`{fname}` left hooks attached to {left}: later runs of the model would still be patched. "
            f"Add hooks inside `with model.hooks([...]):` (or use model.run_with_hooks) so they are removed."
        )


@legacy_check
def check_causal_mask(mask_fn: Callable[[int], torch.Tensor]) -> int:
    """``mask_fn(n_pos)`` returns a bool ``[n_pos, n_pos]`` tensor, True where query i may see key j (j <= i)."""
    sizes = (1, 2, 5, 8)
    for n in sizes:
        got = call_student(mask_fn, n, case=f"n_pos={n}")
        if not isinstance(got, torch.Tensor):
            raise CheckFailed(f"mask for n_pos={n}: expected a torch.Tensor, got {type(got).__name__}.")
        if got.dtype != torch.bool:
            raise CheckFailed(
                f"mask for n_pos={n}: expected dtype torch.bool (True = may attend), got {got.dtype}. "
                f"A bool mask works with masked_fill; convert with `.bool()`."
            )
        assert_close(got, causal_mask(n), what=f"mask for n_pos={n} (row = query, column = key)")
    return len(sizes)


@legacy_check
def check_attention_forward(attention_fn: Callable[..., tuple[torch.Tensor, torch.Tensor]]) -> int:
    """``attention_fn(q, k, v)`` returns ``(z, pattern)``: causal scaled dot-product attention.

    q, k: ``[batch, pos, d_head]``; v: ``[batch, pos, d_v]``; z: ``[batch, pos, d_v]``;
    pattern: ``[batch, q_pos, k_pos]``.
    """
    g = torch.Generator().manual_seed(1)
    cases = {
        "batch 2, pos 5, d_head 20, d_v 7": (2, 5, 20, 7),
        "batch 1, pos 3, d_head 4, d_v 4": (1, 3, 4, 4),
        "batch 3, pos 6, d_head 16, d_v 5 (large scores)": (3, 6, 16, 5),
    }
    for name, (b, n, d, dv) in cases.items():
        scale = 6.0 if "large" in name else 1.0
        q = torch.randn(b, n, d, generator=g) * scale
        k = torch.randn(b, n, d, generator=g) * scale
        v = torch.randn(b, n, dv, generator=g)
        got = call_student(attention_fn, q.clone(), k.clone(), v.clone(), case=name)
        if not (isinstance(got, tuple | list) and len(got) == 2):
            raise CheckFailed(f"{name}: expected a pair (z, pattern), got {type(got).__name__}.")
        z_ref, pattern_ref = _reference_attention(q, k, v)
        assert_close(got[1], pattern_ref, what=f"pattern for {name}", rtol=1e-4, atol=1e-5)
        assert_close(got[0], z_ref, what=f"z for {name}", rtol=1e-4, atol=1e-5)
    return len(cases)


@legacy_check
def check_next_token_probs(probs_fn: Callable[[dict[str, torch.Tensor], int], torch.Tensor]) -> int:
    """``probs_fn(cache, position)`` returns next-token probabilities ``[batch, vocab]`` at ``position``,
    read from ``cache["hook_logits"]`` of ``model.run_with_cache(tokens)``."""
    n = 0
    for name, model, tokens in _models_and_tokens():
        _, cache = model.run_with_cache(tokens)
        for position in (3, 0, 4):
            got = call_student(probs_fn, dict(cache), position, case=f"{name}, position {position}")
            expected = torch.softmax(cache["hook_logits"][:, position], dim=-1)
            assert_close(got, expected, what=f"probabilities at position {position} ({name})", rtol=1e-4, atol=1e-6)
            n += 1
    return n


@legacy_check
def check_edge_contribution(edge_fn: Callable[[dict[str, torch.Tensor], int, int], torch.Tensor]) -> int:
    """``edge_fn(cache, query_pos, key_pos)`` returns ``pattern[:, q, k] * v[:, k]``, ``[batch, d_v]``."""
    n = 0
    for name, model, tokens in _models_and_tokens():
        _, cache = model.run_with_cache(tokens)
        for q, k in ((3, 1), (4, 0), (2, 2)):
            got = call_student(edge_fn, dict(cache), q, k, case=f"{name}, edge {q}->{k}")
            expected = edge_contribution(cache, q, k)
            assert_close(got, expected, what=f"what position {q} reads from position {k} ({name})", rtol=1e-4, atol=1e-6)
            n += 1
    # The contributions of all keys must add up to the head's output: a consistency case.
    name, model, tokens = _models_and_tokens()[0]
    _, cache = model.run_with_cache(tokens)
    total = sum(call_student(edge_fn, dict(cache), 3, k, case="sum over keys") for k in range(4))
    assert_close(total, cache["hook_z"][:, 3], what="sum over keys 0..3 of what position 3 reads (should be z[3])",
                 rtol=1e-4, atol=1e-5)
    return n + 1


@legacy_check
def check_patch_value(patch_fn: Callable[..., torch.Tensor]) -> int:
    """``patch_fn(model, tokens, source_tokens, key_pos)`` returns the logits of ``tokens`` run with
    ``hook_v`` at ``key_pos`` copied from the ``source_tokens`` run, and leaves no hook behind."""
    n = 0
    for name, model, inputs in _models_and_tokens():
        for tokens, source, key_pos, what in (
            (inputs[1:], inputs[:1], 1, "woman run, value of 'man'"),
            (inputs[:1], inputs[1:], 1, "man run, value of 'woman'"),
            (inputs[1:], inputs[:1], 4, "woman run, value at position 4"),
        ):
            case = f"{name}, {what}"
            got = call_student(patch_fn, model, tokens.clone(), source.clone(), key_pos, case=case)
            _no_hooks_left(model, getattr(patch_fn, "__name__", "your function"))
            expected = patch_activation(model, tokens, source, "hook_v", positions=key_pos)
            assert_close(got, expected, what=f"patched logits ({case})", rtol=1e-4, atol=1e-5)
            n += 1
    return n
