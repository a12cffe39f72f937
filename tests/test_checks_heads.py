"""Lesson 2's exercise checks accept the solution and reject the stub and plausible wrong answers."""

from __future__ import annotations

import pytest
import torch
from check_helpers import verify_check
from scipy.optimize import linear_sum_assignment

from toyattn import checks
from toyattn.checks.core import CheckFailed

# ---------------------------------------------------------------- solutions (as a student would write them)


def permute_heads(qkv, perm, n_heads):
    d_in = qkv.shape[0]
    d_head = qkv.shape[1] // (3 * n_heads)
    return qkv.reshape(d_in, 3, n_heads, d_head)[:, :, perm].reshape(d_in, -1)


def invert_permutation(perm):
    inv = torch.empty_like(perm)
    inv[perm] = torch.arange(len(perm))
    return inv


def head_features(qkv, n_heads):
    d_in = qkv.shape[0]
    d_head = qkv.shape[1] // (3 * n_heads)
    return qkv.reshape(d_in, 3, n_heads, d_head).permute(2, 1, 0, 3).reshape(n_heads, -1)


def optimal_match(cost):
    rows, cols = linear_sum_assignment(cost.numpy())
    return torch.as_tensor(cols)


def greedy(cost):
    taken, out = set(), []
    for row in cost:
        j = min((j for j in range(len(row)) if j not in taken), key=lambda j: float(row[j]))
        taken.add(j)
        out.append(j)
    return torch.tensor(out)


def recover_permutation(ref_qkv, client_qkv, n_heads):
    cost = torch.cdist(head_features(client_qkv, n_heads), head_features(ref_qkv, n_heads))
    return optimal_match(cost)


def qk_ov_features(W_Q, W_K, W_V, W_O):
    n = W_Q.shape[0]
    return torch.cat([(W_Q @ W_K.transpose(1, 2)).reshape(n, -1), (W_V @ W_O).reshape(n, -1)], dim=1)


# ---------------------------------------------------------------- tests


def test_check_permute_heads(capsys):
    def seed_style(qkv, perm, n_heads):  # the seed assumed d_in == n_heads * d_head; here: reshape by d_in
        d_head = qkv.shape[1] // (3 * n_heads)
        return qkv.reshape(qkv.shape[0], 3, d_head, n_heads)[:, :, :, perm].reshape(qkv.shape[0], -1)

    def only_q(qkv, perm, n_heads):
        out = qkv.clone()
        width = qkv.shape[1] // 3
        out[:, :width] = permute_heads(qkv, perm, n_heads)[:, :width]
        return out

    verify_check(
        checks.check_permute_heads,
        permute_heads,
        [
            lambda qkv, perm, n: permute_heads(qkv, invert_permutation(perm), n),  # the inverse convention
            seed_style,  # heads and dims confused
            only_q,  # K and V left behind
        ],
        capsys,
    )


def test_check_invert_permutation(capsys):
    verify_check(
        checks.check_invert_permutation,
        invert_permutation,
        [
            lambda perm: perm.clone(),  # right only for swaps
            lambda perm: perm.flip(0),
            lambda perm: perm[perm],  # applying it twice
        ],
        capsys,
    )


def test_check_head_features(capsys):
    def interleaved_but_consistent(qkv, n_heads):  # the seed's order [H, d_in, 3, d_head]: accepted
        d_in = qkv.shape[0]
        return qkv.reshape(d_in, 3, n_heads, -1).permute(2, 0, 1, 3).reshape(n_heads, -1)

    checks.check_head_features(interleaved_but_consistent)

    def mixed_heads(qkv, n_heads):  # reshape in the wrong order: each row mixes several heads
        return qkv.reshape(n_heads, -1)

    def only_q(qkv, n_heads):
        return head_features(qkv, n_heads)[:, : qkv.shape[0] * qkv.shape[1] // (3 * n_heads)]

    verify_check(checks.check_head_features, head_features, [mixed_heads, only_q, lambda qkv, n: qkv.T], capsys)


def test_check_optimal_match(capsys):
    verify_check(
        checks.check_optimal_match,
        optimal_match,
        [
            greedy,
            lambda cost: cost.argmin(dim=1),  # a row's favourite, even when taken twice
            lambda cost: torch.as_tensor(linear_sum_assignment(cost.numpy().T)[1]),  # the transpose's answer
        ],
        capsys,
    )


def test_check_recover_permutation(capsys):
    def seed_bug(ref_qkv, client_qkv, n_heads):  # rows = reference heads: returns the inverse
        cost = torch.cdist(head_features(ref_qkv, n_heads), head_features(client_qkv, n_heads))
        return optimal_match(cost)

    verify_check(
        checks.check_recover_permutation,
        recover_permutation,
        [seed_bug, lambda r, c, n: torch.arange(n)],
        capsys,
    )
    with pytest.raises(CheckFailed, match="That is the inverse"):
        checks.check_recover_permutation(seed_bug)


def test_check_qk_ov_features(capsys):
    def transposed_qk(W_Q, W_K, W_V, W_O):
        n = W_Q.shape[0]
        return torch.cat([(W_K @ W_Q.transpose(1, 2)).reshape(n, -1), (W_V @ W_O).reshape(n, -1)], dim=1)

    def raw(W_Q, W_K, W_V, W_O):  # right shape by accident? no: raw weights, not rotation-invariant
        n = W_Q.shape[0]
        return torch.cat([W_Q.reshape(n, -1), W_K.reshape(n, -1), W_V.reshape(n, -1), W_O.reshape(n, -1)], dim=1)

    def qk_only(W_Q, W_K, W_V, W_O):
        return (W_Q @ W_K.transpose(1, 2)).reshape(W_Q.shape[0], -1)

    verify_check(checks.check_qk_ov_features, qk_ov_features, [transposed_qk, raw, qk_only], capsys)
