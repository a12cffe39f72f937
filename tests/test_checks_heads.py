"""Lesson 2's exercise checks accept the solution and reject the stub and plausible wrong answers,
in class and in grading, and name the recognisable mistakes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from check_helpers import verify_check
from heads_helpers import (
    exact_lookup,
    global_greedy_recover,
    greedy,
    head_features,
    invert_permutation,
    optimal_match,
    q_only,
    qk_only,
    recover_permutation,
)
from scipy.optimize import linear_sum_assignment

from toyattn import checks
from toyattn.heads.matching import greedy_match

pytestmark = pytest.mark.usefixtures("single_thread")


def permute_heads(qkv, perm, n_heads):
    d_in = qkv.shape[0]
    d_head = qkv.shape[1] // (3 * n_heads)
    return qkv.reshape(d_in, 3, n_heads, d_head)[:, :, perm].reshape(d_in, -1)


def qk_ov_features(W_Q, W_K, W_V, W_O):
    n = W_Q.shape[0]
    return torch.cat([(W_Q @ W_K.transpose(1, 2)).reshape(n, -1), (W_V @ W_O).reshape(n, -1)], dim=1)


def permute_mha(in_proj_weight, in_proj_bias, out_proj_weight, perm, n_heads):
    w = permute_heads(in_proj_weight.T, perm, n_heads).T
    b = permute_heads(in_proj_bias[None], perm, n_heads)[0]
    d_out = out_proj_weight.shape[0]
    return w, b, out_proj_weight.reshape(d_out, n_heads, -1)[:, perm].reshape(d_out, -1)


def test_check_permute_heads(capsys, tmp_path_factory, monkeypatch):
    def seed_style(qkv, perm, n_heads):  # the seed assumed d_in == n_heads * d_head: heads and dims confused
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
            lambda qkv, perm, n: permute_heads(qkv, invert_permutation(perm), n),
            seed_style,
            only_q,
            lambda qkv, perm, n: qkv,  # nothing moved
        ],
        capsys,
        messages=["the inverse convention", "split as [3, d_head, n_heads]", "only the Q block moved", None],
        tmp_path_factory=tmp_path_factory,
        monkeypatch=monkeypatch,
        names_case=True,
    )


def test_check_invert_permutation(capsys, tmp_path_factory, monkeypatch):
    verify_check(
        checks.check_invert_permutation,
        invert_permutation,
        [
            lambda perm: perm.clone(),  # right only for swaps
            lambda perm: perm.flip(0),
            lambda perm: perm[perm],  # applying it twice
            lambda perm: invert_permutation(perm).float(),  # float indices
        ],
        capsys,
        messages=["the permutation itself", "reversed", "applied twice", "integer head indices"],
        tmp_path_factory=tmp_path_factory,
        monkeypatch=monkeypatch,
        names_case=True,
    )
    checks.check_invert_permutation(lambda perm: torch.argsort(perm))  # another right way


def test_check_head_features(capsys, tmp_path_factory, monkeypatch):
    def interleaved_but_consistent(qkv, n_heads):  # the seed's order [H, d_in, 3, d_head]: accepted
        d_in = qkv.shape[0]
        return qkv.reshape(d_in, 3, n_heads, -1).permute(2, 0, 1, 3).reshape(n_heads, -1)

    checks.check_head_features(interleaved_but_consistent)

    def mixed_heads(qkv, n_heads):  # reshape in the wrong order: each row mixes several heads
        return qkv.reshape(n_heads, -1)

    def only_q(qkv, n_heads):
        return head_features(qkv, n_heads)[:, : qkv.shape[0] * qkv.shape[1] // (3 * n_heads)]

    def sorted_rows(qkv, n_heads):  # each head's weights, but each row in its own order
        return head_features(qkv, n_heads).sort(dim=1).values

    verify_check(
        checks.check_head_features,
        head_features,
        [mixed_heads, only_q, sorted_rows, lambda qkv, n: qkv.T],
        capsys,
        messages=["qkv.reshape(n_heads, -1)", "one block per head", "each row is in its own order", "expected shape"],
        tmp_path_factory=tmp_path_factory,
        monkeypatch=monkeypatch,
        names_case=True,
    )


def test_check_optimal_match(capsys, tmp_path_factory, monkeypatch):
    verify_check(
        checks.check_optimal_match,
        optimal_match,
        [
            greedy,
            lambda cost: greedy_match(cost.T).argsort(),  # greedy over columns, turned round: still greedy
            lambda cost: cost.argmin(dim=1),  # a row's favourite, even when taken twice
            lambda cost: torch.as_tensor(linear_sum_assignment(cost.numpy().T)[1]),  # the transpose's answer
            lambda cost: torch.as_tensor(linear_sum_assignment(cost.numpy(), maximize=True)[1]),
            lambda cost: torch.as_tensor(linear_sum_assignment(cost.numpy())[1]).numpy(),  # a NumPy array
        ],
        capsys,
        messages=["greedy matching", None, "cheapest column (argmin)", "the transposed matrix",
                  "the most expensive assignment", "expected a torch.Tensor"],
        tmp_path_factory=tmp_path_factory,
        monkeypatch=monkeypatch,
        names_case=True,
    )


def seed_bug(ref_qkv, client_qkv, n_heads):  # rows = reference heads: returns the inverse
    cost = torch.cdist(head_features(ref_qkv, n_heads), head_features(client_qkv, n_heads))
    return optimal_match(cost)


def greedy_recover(ref_qkv, client_qkv, n_heads):
    return greedy(torch.cdist(head_features(client_qkv, n_heads), head_features(ref_qkv, n_heads)))


def greedy_over_reference_rows(ref_qkv, client_qkv, n_heads):
    return invert_permutation(greedy(torch.cdist(head_features(ref_qkv, n_heads), head_features(client_qkv, n_heads))))


def test_check_recover_permutation(capsys, tmp_path_factory, monkeypatch):
    verify_check(
        checks.check_recover_permutation,
        recover_permutation,
        [
            seed_bug,
            lambda r, c, n: torch.arange(n),
            greedy_recover,
            global_greedy_recover,
            greedy_over_reference_rows,
            exact_lookup,
            q_only,
            qk_only,
        ],
        capsys,
        messages=[
            "It looks like the inverse",
            None,
            "greedy matching (each client head",
            "greedy matching (the closest pair first)",
            "greedy matching over reference heads",
            "This client is noisy",
            "only Q was compared",
            "only Q and K were compared",
        ],
        tmp_path_factory=tmp_path_factory,
        monkeypatch=monkeypatch,
        names_case=True,
    )


@pytest.mark.parametrize("seed", range(30))
def test_optimal_match_cases_trap_greedy(seed):
    missed = 0
    for case in checks.check_optimal_match.cases(seed):
        (cost,) = case.args
        best = cost[torch.arange(len(cost)), optimal_match(cost)].sum()
        missed += bool(cost[torch.arange(len(cost)), greedy(cost)].sum() > best + 1e-9)
    assert missed >= 2


def test_check_invariant_features(capsys, tmp_path_factory, monkeypatch):
    def transposed_qk(W_Q, W_K, W_V, W_O):  # W_K W_Q^T: also invariant, also tells heads apart: accepted
        n = W_Q.shape[0]
        return torch.cat([(W_K @ W_Q.transpose(1, 2)).reshape(n, -1), (W_V @ W_O).reshape(n, -1)], dim=1)

    checks.check_invariant_features(transposed_qk)

    def raw(W_Q, W_K, W_V, W_O):  # raw weights: change under a rotation inside the head
        n = W_Q.shape[0]
        return torch.cat([W_Q.reshape(n, -1), W_K.reshape(n, -1), W_V.reshape(n, -1), W_O.reshape(n, -1)], dim=1)

    def qk_only(W_Q, W_K, W_V, W_O):
        return (W_Q @ W_K.transpose(1, 2)).reshape(W_Q.shape[0], -1)

    def ov_only(W_Q, W_K, W_V, W_O):
        return (W_V @ W_O).reshape(W_Q.shape[0], -1)

    def singular_values(W_Q, W_K, W_V, W_O):  # invariant, but blind to what the head reads
        return torch.cat([torch.linalg.svdvals(W_Q @ W_K.transpose(1, 2)), torch.linalg.svdvals(W_V @ W_O)], dim=1)

    def norms(W_Q, W_K, W_V, W_O):
        return torch.stack([W.flatten(1).norm(dim=1) for W in (W_Q, W_K, W_V, W_O)], dim=1)

    def q_times_k_elementwise(W_Q, W_K, W_V, W_O):  # not a matrix product: not invariant
        return torch.cat([(W_Q * W_K).flatten(1), (W_V @ W_O).flatten(1)], dim=1)

    def qk_and_qv(W_Q, W_K, W_V, W_O):  # W_Q W_V^T: invariant only if Q and V turned the same way
        return torch.cat([(W_Q @ W_K.transpose(1, 2)).flatten(1), (W_Q @ W_V.transpose(1, 2)).flatten(1)], dim=1)

    verify_check(
        checks.check_invariant_features,
        qk_ov_features,
        [raw, qk_only, ov_only, singular_values, norms, q_times_k_elementwise, qk_and_qv],
        capsys,
        messages=["It looks like raw weights", "norms or singular values", "norms or singular values",
                  "norms or singular values", "norms or singular values", "got features that differ",
                  "got features that differ"],
        tmp_path_factory=tmp_path_factory,
        monkeypatch=monkeypatch,
        names_case=True,
    )


def test_check_permute_mha(capsys, tmp_path_factory, monkeypatch):
    def in_proj_only(w, b, w_out, perm, n):  # the partial permutation: out_proj left behind
        w2, b2, _ = permute_mha(w, b, w_out, perm, n)
        return w2, b2, w_out

    def not_transposed_back(w, b, w_out, perm, n):  # permuted w.T, then forgot to turn it back
        _, b2, o2 = permute_mha(w, b, w_out, perm, n)
        return permute_heads(w.T, perm, n), b2, o2

    def bias_left(w, b, w_out, perm, n):
        w2, _, o2 = permute_mha(w, b, w_out, perm, n)
        return w2, b, o2

    def out_rows(w, b, w_out, perm, n):
        w2, b2, _ = permute_mha(w, b, w_out, perm, n)
        return w2, b2, w_out.reshape(n, -1, w_out.shape[1])[perm].reshape(w_out.shape)

    verify_check(
        checks.check_permute_mha,
        permute_mha,
        [in_proj_only, not_transposed_back, bias_left, out_rows, lambda w, b, o, perm, n: permute_mha(w, b, o, perm, n)[0]],
        capsys,
        messages=["out_proj was left as it was", "expected shape", "the bias was left", "rows of out_proj",
                  "expected a tuple"],
        tmp_path_factory=tmp_path_factory,
        monkeypatch=monkeypatch,
        names_case=True,
    )


def test_permute_mha_solution_keeps_the_layer_and_the_partial_one_does_not():
    """What the exercise's follow-up shows: a joint permutation leaves the output unchanged, a partial one not."""
    torch.manual_seed(0)
    mha = torch.nn.MultiheadAttention(12, 4, batch_first=True)
    x = torch.randn(2, 5, 12)
    before = mha(x, x, x)[0]
    perm = torch.tensor([2, 3, 1, 0])
    w, b, o = permute_mha(mha.in_proj_weight.detach(), mha.in_proj_bias.detach(), mha.out_proj.weight.detach(), perm, 4)
    with torch.no_grad():
        mha.in_proj_weight.copy_(w)
        mha.in_proj_bias.copy_(b)
        assert (mha(x, x, x)[0] - before).abs().max() > 1e-2  # partial: out_proj not yet permuted
        mha.out_proj.weight.copy_(o)
        assert (mha(x, x, x)[0] - before).abs().max() < 1e-5


def test_cases_depend_on_the_seed():
    for check in (checks.check_permute_heads, checks.check_recover_permutation, checks.check_optimal_match,
                  checks.check_invariant_features, checks.check_permute_mha, checks.check_invert_permutation):
        a, b = check.cases(1), check.cases(2)
        assert [c.name for c in a] != [c.name for c in b] or not all(
            np.array_equal(x.args[0], y.args[0]) for x, y in zip(a, b, strict=True)), check.name
