"""Checks for lesson 2 (``solutions/02_head_permutation``): permuting heads, matching them, finding them again.

All fused weights here use the layout of GPT-2's ``c_attn``, ``[d_in, 3*n_heads*d_head]``
(``layout="in_out"``), except ``check_permute_mha`` (PyTorch's ``[3*n_heads*d_head, d_in]``), and the
course's permutation convention: new head i = old head ``perm[i]``. Cases are fresh for every seed,
and the permutation cases include noisy clients and heads built to trap greedy matching and
matching on one weight block alone (see :func:`recover_cases`).
"""

from __future__ import annotations

import itertools

import numpy as np
import torch

from toyattn.checks.answers import Returned
from toyattn.checks.core import Case, CheckFailed, assert_close, exercise_check, looks_like
from toyattn.checks.head_cases import (
    cost_cases,
    feature_cases,
    features,
    fused_cases,
    greedy_global,
    greedy_rows,
    head_cost,
    invariant_cases,
    inverse_cases,
    mha_cases,
    recover_cases,
)
from toyattn.heads.fused_qkv import permute_out_proj, permute_qkv, permute_qkv_bias
from toyattn.heads.matching import hungarian_match
from toyattn.heads.permutations import as_permutation, invert_permutation

__all__ = [
    "check_head_features",
    "check_invariant_features",
    "check_invert_permutation",
    "check_optimal_match",
    "check_permute_heads",
    "check_permute_mha",
    "check_recover_permutation",
]

BLOCKS = ("Q", "K", "V")


# ---------------------------------------------------------------------------------------------- helpers


def _permutation_answer(got: Returned, n: int, what: str) -> torch.Tensor:
    """The student's answer as a permutation of ``n``, or a CheckFailed saying what is wrong with it."""
    if got.is_tuple:
        raise CheckFailed(f"{what}: expected one tensor of indices, got a tuple of {len(got.arrays)}.")
    if not got.is_tensor():
        raise CheckFailed(f"{what}: expected a torch.Tensor of indices, got {got.kind} (wrap it: torch.as_tensor(...)).")
    try:
        return as_permutation(torch.from_numpy(got.value.copy()), n)
    except (TypeError, ValueError) as err:
        raise CheckFailed(f"{what}: expected a permutation of 0..{n - 1}, got {got.value.tolist()}: {err}") from None


# ---------------------------------------------------------------------------------------------- Ex 1


@exercise_check(cases=fused_cases)
def check_permute_heads(case: Case, got: Returned) -> None:
    """``permute_fn(qkv, perm, n_heads)`` reorders the heads of ``qkv [d_in, 3*n_heads*d_head]``:
    new head i = old head ``perm[i]``, in the Q, K and V blocks alike."""
    qkv, perm, n_heads = case.args
    d_in, width = qkv.shape
    d_head = width // (3 * n_heads)

    def only_q() -> torch.Tensor:
        out = qkv.clone()
        out[:, : width // 3] = permute_qkv(qkv, perm, n_heads, layout="in_out")[:, : width // 3]
        return out

    assert_close(
        got, permute_qkv(qkv, perm, n_heads, layout="in_out"), what=f"permuted QKV for {case.name}", rtol=0, atol=0,
        mistakes={
            "the inverse convention (new head perm[i] = old head i): new head i must be old head perm[i]":
                lambda: permute_qkv(qkv, invert_permutation(perm), n_heads, layout="in_out"),
            "the columns were split as [3, d_head, n_heads]: inside each of Q, K, V the columns are head 0's "
            "d_head columns, then head 1's, so split them as [3, n_heads, d_head]":
                lambda: qkv.reshape(d_in, 3, d_head, n_heads)[:, :, :, perm].reshape(d_in, -1),
            "only the Q block moved: a head is its Q, K and V together, and all three must move":
                only_q,
            "the rows (inputs) were permuted, not the heads' columns": lambda: qkv[perm],
        },
    )


# ---------------------------------------------------------------------------------------------- Ex 2


@exercise_check(cases=inverse_cases)
def check_invert_permutation(case: Case, got: Returned) -> None:
    """``invert_fn(perm)`` returns ``inv`` with ``inv[perm[i]] = i``."""
    (perm,) = case.args
    what = f"inverse of {case.name}"
    answer = _permutation_answer(got, len(perm), what)
    assert_close(
        answer, invert_permutation(perm), what=what, rtol=0, atol=0,
        mistakes={
            "the permutation itself: that is its inverse only when it is made of swaps": lambda: perm,
            "the permutation applied twice (perm[perm])": lambda: perm[perm],
            "the permutation reversed (perm.flip(0)): reversing the list is not undoing the shuffle":
                lambda: perm.flip(0),
        },
    )


# ---------------------------------------------------------------------------------------------- Ex 3


@exercise_check(cases=feature_cases)
def check_head_features(case: Case, got: Returned) -> None:
    """``features_fn(qkv, n_heads)`` returns ``[n_heads, 3*d_in*d_head]``: row h holds every weight of head h
    (its Q, K and V blocks) and nothing else. Any fixed order inside a row is accepted."""
    qkv, n_heads = case.args
    expected = features(qkv, n_heads).numpy()
    what = f"features for {case.name}"
    if got.is_tuple:
        raise CheckFailed(f"{what}: expected one tensor, got a tuple of {len(got.arrays)}.")
    if not got.is_tensor():
        raise CheckFailed(f"{what}: expected a torch.Tensor, got {got.kind}.")
    a = got.value.astype(np.float64)
    if a.shape != expected.shape:
        hint = ""
        if a.shape == (n_heads, expected.shape[1] // 3):
            hint = " It looks like one block per head (only Q?): a head's features are its Q, K and V weights."
        raise CheckFailed(
            f"{what}: expected shape {expected.shape} (one row per head, 3 * d_in * d_head = {expected.shape[1]} "
            f"numbers each), got {a.shape}.{hint}"
        )
    # Same multiset of numbers in each row = the row holds exactly that head's weights.
    try:
        assert_close(np.sort(a, axis=1), np.sort(expected, axis=1), check_type=False,
                     what=f"the weights in each row for {case.name}, sorted (row h must hold head h's weights)")
    except CheckFailed as err:
        hint = looks_like(a, {
            "qkv.reshape(n_heads, -1): that cuts the matrix into groups of rows (inputs), while every head's "
            "columns run through all rows": lambda: qkv.reshape(n_heads, -1),
        })
        raise CheckFailed(f"{err}{hint}") from None
    # The order inside a row must be the same for every head, so distances between heads are right.
    dist = np.linalg.norm(a[:, None] - a[None], axis=-1)
    ref_dist = np.linalg.norm(expected[:, None] - expected[None], axis=-1)
    assert_close(dist, ref_dist, what=f"distances between heads' features for {case.name}", check_type=False,
                 mistakes={"each row is in its own order (sorted?): use one order for every head, so that "
                           "entry k of every row is the same weight position": lambda: dist})


# ---------------------------------------------------------------------------------------------- Ex 4


@exercise_check(cases=cost_cases)
def check_optimal_match(case: Case, got: Returned) -> None:
    """``match_fn(cost)`` returns ``match`` (a LongTensor) with ``match[i]`` = the column given to row i,
    with the smallest possible total ``sum_i cost[i, match[i]]``."""
    (cost,) = case.args
    what = f"match for {case.name}"
    c = cost.numpy()
    if got.is_tensor() and not got.is_tuple and got.value.shape == (len(c),):
        repeated = [j for j in range(len(c)) if (got.value == j).sum() > 1]
        if repeated:
            raise CheckFailed(
                f"{what}: expected every column once, got {got.value.tolist()}, which gives column(s) {repeated} to "
                f"several rows. It looks like each row took its cheapest column (argmin): every column may be used once."
            )
    answer = _permutation_answer(got, len(c), what)
    best = hungarian_match(c)
    rows = np.arange(len(c))
    total, best_total = c[rows, answer.numpy()].sum(), c[rows, best.numpy()].sum()
    if total > best_total + 1e-9:
        hint = looks_like(answer, {
            "greedy matching (each row takes the cheapest column still free): an early row can take the column "
            "a later row needs much more; use scipy.optimize.linear_sum_assignment": lambda: greedy_rows(c),
            "greedy matching (the cheapest entry first): it can still miss the best total; use "
            "scipy.optimize.linear_sum_assignment": lambda: greedy_global(c),
            "the answer for the transposed matrix (for each column, its row): match[i] is the column given to "
            "row i": lambda: hungarian_match(c.T),
            "the most expensive assignment (maximize=True?): the smallest total is asked for":
                lambda: hungarian_match(-c),
        }, rtol=0, atol=0)
        raise CheckFailed(
            f"{what}: expected an assignment with total {best_total:.4g} (e.g. {best.tolist()}), got "
            f"{answer.tolist()}, which costs {total:.4g}.{hint}"
        )


# ---------------------------------------------------------------------------------------------- Ex 5


def _recover_mistakes(ref_qkv: torch.Tensor, client_qkv: torch.Tensor, n_heads: int, perm: torch.Tensor):
    full = head_cost(ref_qkv, client_qkv, n_heads)
    mistakes = {
        "the inverse: with rows = reference heads you found, for each reference head, where it went; "
        "the convention asks, for each client head, where it came from":
            lambda: invert_permutation(perm),
        "greedy matching (each client head takes the closest reference head still free): use the optimal "
        "matching of exercise 4": lambda: greedy_rows(full),
        "greedy matching (the closest pair first): use the optimal matching of exercise 4":
            lambda: greedy_global(full),
        "greedy matching over reference heads: use the optimal matching of exercise 4":
            lambda: invert_permutation(greedy_rows(full.T)),
    }
    for k in (1, 2):
        for blocks in itertools.combinations(range(3), k):
            names = " and ".join(BLOCKS[b] for b in blocks)
            mistakes[f"only {names} {'was' if k == 1 else 'were'} compared: a head is its Q, K and V together, "
                     f"and two heads can share one block"] = (
                lambda blocks=blocks: hungarian_match(head_cost(ref_qkv, client_qkv, n_heads, blocks)))
    return mistakes


@exercise_check(cases=recover_cases)
def check_recover_permutation(case: Case, got: Returned) -> None:
    """``recover_fn(ref_qkv, client_qkv, n_heads)`` returns ``perm`` with
    ``client_qkv ≈ permute_heads(ref_qkv, perm, n_heads)`` (exactly, or up to noise)."""
    ref_qkv, client_qkv, n_heads = case.args
    perm = case.expect["perm"]
    what = f"recovered permutation for {case.name}"
    try:
        answer = _permutation_answer(got, n_heads, what)
    except CheckFailed as err:
        if case.expect["noisy"]:
            raise CheckFailed(
                f"{err} This client is noisy: no client head equals a reference head exactly, so look for the "
                f"closest reference head (a distance), not for an exact copy."
            ) from None
        raise
    if not torch.equal(answer, perm):
        hint = looks_like(answer, _recover_mistakes(ref_qkv, client_qkv, n_heads, perm), rtol=0, atol=0)
        raise CheckFailed(f"{what}: expected {perm.tolist()}, got {answer.tolist()}.{hint}")


# ---------------------------------------------------------------------------------------------- Ex 6


@exercise_check(cases=invariant_cases)
def check_invariant_features(case: Case, got: Returned) -> None:
    """``features_fn(W_Q, W_K, W_V, W_O)`` returns one row of features per head ``[n_heads, n_features]``
    that does not change when a head is rotated inside (``W_Q R, W_K R, W_V S, S^T W_O``) and tells apart
    heads that compute different things. Any such features are accepted."""
    W_Q = case.args[0]
    n = W_Q.shape[0]
    what = f"features for {case.name}"
    if got.is_tuple or not got.is_tensor():
        raise CheckFailed(f"{what}: expected one torch.Tensor [n_heads, n_features], got {got.kind}.")
    f = got.value.astype(np.float64)
    if f.ndim != 2 or f.shape[0] != n or f.shape[1] < 1:
        raise CheckFailed(f"{what}: expected shape ({n}, n_features), one row per head, got {f.shape}.")
    if not np.isfinite(f).all():
        raise CheckFailed(f"{what}: contains NaN or inf.")
    scale = float(np.abs(f).max()) or 1.0
    per_head = {W_Q[0].numel() * k for k in (1, 2, 3)} | {W_Q[0].numel() * 3 + case.args[3][0].numel()}
    group = case.expect["group"]
    for i, j in itertools.combinations(range(n), 2):
        gap = float(np.abs(f[i] - f[j]).max())
        if group[i] == group[j] and gap > 1e-4 * scale:
            hint = ""
            if f.shape[1] in per_head:
                hint = (" It looks like raw weights: a rotation inside the head changes them but not what the head "
                        "computes; build features from products in which the rotation cancels.")
            raise CheckFailed(
                f"{what}: rows {i} and {j} are the same head, once rotated inside the head (W_Q R, W_K R, W_V S, "
                f"S^T W_O: the same attention scores and the same output). Expected the same features, got "
                f"features that differ by up to {gap:.3g}.{hint}"
            )
        if group[i] != group[j] and gap <= 1e-4 * scale:
            hint = ""
            if {group[i], group[j]} in case.expect["twins"]:
                hint = (" These two heads have the same weight norms and singular values, but one reads its input "
                        "through a turned W_Q (or W_V), so its scores (or its output) differ. It looks like the "
                        "features are norms or singular values, or leave out W_QK or W_OV.")
            raise CheckFailed(
                f"{what}: rows {i} and {j} are heads that compute different things. Expected different features, "
                f"got the same.{hint}"
            )


# ---------------------------------------------------------------------------------------------- Ex 7


@exercise_check(cases=mha_cases)
def check_permute_mha(case: Case, got: Returned) -> None:
    """``permute_fn(in_proj_weight, in_proj_bias, out_proj_weight, perm, n_heads)`` returns the three tensors
    of ``nn.MultiheadAttention`` with its heads reordered (new head i = old head ``perm[i]``)."""
    w_in, b_in, w_out, perm, n_heads = case.args
    if not got.is_tuple or len(got.arrays) != 3:
        raise CheckFailed(f"{case.name}: expected a tuple (in_proj_weight, in_proj_bias, out_proj_weight), got "
                          f"{'a tuple of ' + str(len(got.arrays)) if got.is_tuple else got.kind}.")
    expected = (
        permute_qkv(w_in, perm, n_heads, layout="out_in"),
        permute_qkv_bias(b_in, perm, n_heads),
        permute_out_proj(w_out, perm, n_heads, layout="out_in"),
    )
    d_head = w_out.shape[1] // n_heads
    in_mistakes = {
        "in_proj_weight was permuted as if it were [d_in, 3*n_heads*d_head]: PyTorch stores it as "
        "[3*n_heads*d_head, d_in] (the layer computes x @ W.T), so the heads are groups of rows":
            lambda: permute_qkv(w_in, perm, n_heads, layout="in_out"),
        "in_proj_weight was left as it was": lambda: w_in,
        "the inverse permutation": lambda: permute_qkv(w_in, invert_permutation(perm), n_heads, layout="out_in"),
    }
    out_mistakes = {
        "out_proj was left as it was: then head i's output meets the block of out_proj that belonged to another "
        "head, and the layer computes something else": lambda: w_out,
        "the rows of out_proj.weight were permuted: it is [d_out, n_heads*d_head], so a head's block is a group "
        "of d_head columns": lambda: w_out.reshape(n_heads, d_head, -1)[perm].reshape(w_out.shape),
    }
    bias_mistakes = {"the bias was left as it was: it belongs to the heads like the weight's rows": lambda: b_in}
    for i, (name, exp, mistakes) in enumerate((
        ("in_proj_weight", expected[0], in_mistakes),
        ("in_proj_bias", expected[1], bias_mistakes),
        ("out_proj_weight", expected[2], out_mistakes),
    )):
        item = Returned((got.arrays[i],), (got.kinds[i],))
        assert_close(item, exp, what=f"{name} for {case.name}", rtol=0, atol=0, mistakes=mistakes)
