"""Checks for lesson 2 (``solutions/02_head_permutation``): permuting heads in a fused QKV weight,
head features, optimal matching and rotation-invariant features.

All fused weights here use the seed notebook's layout ``[d_in, 3*n_heads*d_head]`` (``layout="in_out"``),
and the course's permutation convention: new head i = old head ``perm[i]``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .. import heads as ref
from .core import CheckFailed, assert_close, call_student, legacy_check

__all__ = [
    "check_head_features",
    "check_invert_permutation",
    "check_optimal_match",
    "check_permute_heads",
    "check_qk_ov_features",
    "check_recover_permutation",
]


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _fused_cases() -> dict[str, tuple[torch.Tensor, torch.Tensor, int]]:
    """Named (qkv [d_in, 3*H*dh], perm, n_heads) cases, including d_in != n_heads*d_head and
    permutations that are not their own inverse."""
    g = _gen(0)
    return {
        "2 heads, d_in 4, d_head 2, swap": (torch.randn(4, 12, generator=g), torch.tensor([1, 0]), 2),
        "3 heads, d_in 5, d_head 2, a 3-cycle": (torch.randn(5, 18, generator=g), torch.tensor([1, 2, 0]), 3),
        "4 heads, d_in 3, d_head 3": (torch.randn(3, 36, generator=g), torch.tensor([3, 0, 1, 2]), 4),
        "6 heads, d_in 16, d_head 2": (torch.randn(16, 36, generator=g), ref.random_permutation(6, g), 6),
        "1 head": (torch.randn(4, 6, generator=g), torch.tensor([0]), 1),
    }


def _as_perm_result(got: object, n: int, what: str) -> torch.Tensor:
    if not isinstance(got, torch.Tensor):
        raise CheckFailed(f"{what}: expected a torch.Tensor of head indices, got {type(got).__name__}.")
    try:
        return ref.as_permutation(got, n)
    except (TypeError, ValueError) as err:
        raise CheckFailed(f"{what}: the result {got.tolist()} is not a permutation of {n} heads: {err}") from None


@legacy_check
def check_permute_heads(permute_fn: Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]) -> int:
    """``permute_fn(qkv, perm, n_heads)`` reorders the heads of ``qkv [d_in, 3*n_heads*d_head]``:
    new head i = old head ``perm[i]``, in the Q, K and V blocks alike."""
    cases = _fused_cases()
    for name, (qkv, perm, n_heads) in cases.items():
        got = call_student(permute_fn, qkv.clone(), perm.clone(), n_heads, case=name)
        expected = ref.permute_qkv(qkv, perm, n_heads, layout="in_out")
        assert_close(got, expected, what=f"permuted QKV for {name} (perm {perm.tolist()})", rtol=0, atol=0)
    return len(cases)


@legacy_check
def check_invert_permutation(invert_fn: Callable[[torch.Tensor], torch.Tensor]) -> int:
    """``invert_fn(perm)`` returns ``inv`` with ``inv[perm[i]] = i``."""
    g = _gen(1)
    cases = {
        "[1, 0]": torch.tensor([1, 0]),
        "[1, 2, 0] (a 3-cycle, not its own inverse)": torch.tensor([1, 2, 0]),
        "[0, 1, 2, 3] (the identity)": torch.arange(4),
        "a random permutation of 9": ref.random_permutation(9, g),
    }
    for name, perm in cases.items():
        got = call_student(invert_fn, perm.clone(), case=name)
        got = _as_perm_result(got, len(perm), f"inverse of {name}")
        assert_close(got, ref.invert_permutation(perm), what=f"inverse of {name}", rtol=0, atol=0)
    return len(cases)


@legacy_check
def check_head_features(features_fn: Callable[[torch.Tensor, int], torch.Tensor]) -> int:
    """``features_fn(qkv, n_heads)`` returns ``[n_heads, 3*d_in*d_head]``: row h holds every weight of head h
    (its Q, K and V blocks) and nothing else. Any fixed order inside a row is accepted."""
    cases = _fused_cases()
    for name, (qkv, _perm, n_heads) in cases.items():
        got = call_student(features_fn, qkv.clone(), n_heads, case=name)
        expected = ref.raw_features(ref.HeadWeights.from_fused(qkv, n_heads, layout="in_out"))
        if not isinstance(got, torch.Tensor):
            raise CheckFailed(f"features for {name}: expected a torch.Tensor, got {type(got).__name__}.")
        if tuple(got.shape) != tuple(expected.shape):
            raise CheckFailed(
                f"features for {name}: expected shape {tuple(expected.shape)} (one row per head, "
                f"3 * d_in * d_head = {expected.shape[1]} numbers each), got {tuple(got.shape)}."
            )
        # Same multiset of numbers in each row = the row holds exactly that head's weights.
        assert_close(got.sort(dim=1).values, expected.sort(dim=1).values, what=f"the weights in each row for {name}")
        # The order inside a row must be the same for every head, so distances between heads are right.
        assert_close(torch.cdist(got.double(), got.double()), torch.cdist(expected.double(), expected.double()),
                     what=f"distances between heads' features for {name} (use one order for every head)")
    return len(cases)


def _cost_cases() -> dict[str, torch.Tensor]:
    g = _gen(2)
    return {
        "[[1, 2], [0, 10]] (greedy takes 1 + 10, optimal is 2 + 0)": torch.tensor([[1.0, 2.0], [0.0, 10.0]]),
        "a 3x3 trap for greedy": torch.tensor([[1.0, 1.1, 9.0], [1.2, 9.0, 9.0], [9.0, 1.0, 1.05]]),
        "a random 5x5": torch.rand(5, 5, generator=g),
        "a random 12x12": torch.rand(12, 12, generator=g),
    }


@legacy_check
def check_optimal_match(match_fn: Callable[[torch.Tensor], torch.Tensor]) -> int:
    """``match_fn(cost)`` returns ``match`` (a LongTensor) with ``match[i]`` = the column given to row i,
    with the smallest possible total ``sum_i cost[i, match[i]]``."""
    cases = _cost_cases()
    for name, cost in cases.items():
        got = call_student(match_fn, cost.clone(), case=name)
        got = _as_perm_result(got, len(cost), f"match for {name}")
        best = ref.hungarian_match(cost)
        rows = torch.arange(len(cost))
        total, best_total = float(cost[rows, got].sum()), float(cost[rows, best].sum())
        if total > best_total + 1e-9:
            raise CheckFailed(
                f"match for {name}: your assignment {got.tolist()} costs {total:.4g} in total, but "
                f"{best.tolist()} costs only {best_total:.4g}. Taking the cheapest column row by row (greedy) "
                f"is not optimal: use scipy.optimize.linear_sum_assignment."
            )
    return len(cases)


@legacy_check
def check_recover_permutation(recover_fn: Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]) -> int:
    """``recover_fn(ref_qkv, client_qkv, n_heads)`` returns ``perm`` with
    ``client_qkv == permute_heads(ref_qkv, perm, n_heads)``."""
    cases = _fused_cases()
    for name, (qkv, perm, n_heads) in cases.items():
        client = ref.permute_qkv(qkv, perm, n_heads, layout="in_out")
        got = call_student(recover_fn, qkv.clone(), client.clone(), n_heads, case=name)
        got = _as_perm_result(got, n_heads, f"recovered permutation for {name}")
        if not torch.equal(got, perm):
            hint = ""
            if torch.equal(got, ref.invert_permutation(perm)):
                hint = (" That is the inverse: with rows = reference heads you found, for each reference head, "
                        "where it went; the convention asks, for each client head, where it came from.")
            raise CheckFailed(f"recovered permutation for {name}: expected {perm.tolist()}, got {got.tolist()}.{hint}")
    return len(cases)


@legacy_check
def check_qk_ov_features(
    features_fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
) -> int:
    """``features_fn(W_Q, W_K, W_V, W_O)`` (``[H, d_in, d_head]`` x3 and ``[H, d_head, d_out]``) returns
    ``[H, d_in*d_in + d_in*d_out]``: per head ``W_Q[h] @ W_K[h].T`` flattened, then ``W_V[h] @ W_O[h]`` flattened."""
    g = _gen(3)
    cases = {}
    for n_heads, d_in, d_head, d_out in ((2, 3, 2, 3), (3, 5, 2, 4), (4, 6, 3, 6)):
        cases[f"{n_heads} heads, d_in {d_in}, d_head {d_head}, d_out {d_out}"] = ref.HeadWeights(
            torch.randn(n_heads, d_in, d_head, generator=g),
            torch.randn(n_heads, d_in, d_head, generator=g),
            torch.randn(n_heads, d_in, d_head, generator=g),
            torch.randn(n_heads, d_head, d_out, generator=g),
        )
    for name, hw in cases.items():
        got = call_student(features_fn, hw.W_Q.clone(), hw.W_K.clone(), hw.W_V.clone(), hw.W_O.clone(), case=name)
        assert_close(got, ref.invariant_features(hw), what=f"QK/OV features for {name}", rtol=1e-4, atol=1e-5)
        rotated = ref.rotate_within_heads(hw, g)
        got_rot = call_student(features_fn, rotated.W_Q, rotated.W_K, rotated.W_V, rotated.W_O, case=name)
        assert_close(got_rot, got, what=f"QK/OV features for {name} after rotating inside each head",
                     rtol=1e-4, atol=1e-5)
    return len(cases)
