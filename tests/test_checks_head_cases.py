"""toyattn.checks.head_cases: the recover-permutation cases are solved by the reference and trap each mistake."""

from __future__ import annotations

import pytest
import torch
from scipy.optimize import linear_sum_assignment

from toyattn import checks
from toyattn.checks import head_cases

pytestmark = pytest.mark.usefixtures("single_thread")


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


def greedy_recover(ref_qkv, client_qkv, n_heads):
    return greedy(torch.cdist(head_features(client_qkv, n_heads), head_features(ref_qkv, n_heads)))


def global_greedy_recover(ref_qkv, client_qkv, n_heads):
    cost = torch.cdist(head_features(client_qkv, n_heads), head_features(ref_qkv, n_heads))
    out = torch.full((n_heads,), -1)
    for flat in cost.flatten().argsort():
        i, j = divmod(int(flat), n_heads)
        if out[i] < 0 and j not in out:
            out[i] = j
    return out


def greedy_over_reference_rows(ref_qkv, client_qkv, n_heads):
    return invert_permutation(greedy(torch.cdist(head_features(ref_qkv, n_heads), head_features(client_qkv, n_heads))))


def exact_lookup(ref_qkv, client_qkv, n_heads):  # finds exact copies; 0 where there is none
    fr, fc = head_features(ref_qkv, n_heads), head_features(client_qkv, n_heads)
    return (fc[:, None] == fr[None]).all(-1).long().argmax(dim=1)


def q_only(ref_qkv, client_qkv, n_heads):
    w = ref_qkv.shape[1] // 3
    return recover_permutation(ref_qkv[:, :w].repeat(1, 3), client_qkv[:, :w].repeat(1, 3), n_heads)


def qk_only(ref_qkv, client_qkv, n_heads):
    w = ref_qkv.shape[1] // 3
    return recover_permutation(torch.cat([ref_qkv[:, : 2 * w], ref_qkv[:, :w]], 1),
                               torch.cat([client_qkv[:, : 2 * w], client_qkv[:, :w]], 1), n_heads)


@pytest.mark.parametrize("seed", range(25))
def test_recover_cases_are_solved_by_the_reference_and_trap_each_mistake(seed):
    """For every seed: optimal matching on the full Q, K, V weights (L2, squared L2, L1 or cosine distances)
    finds every case's truth, and each mistake misses at least one case."""
    cases = checks.check_recover_permutation.cases(seed)
    missed = {f.__name__: 0 for f in (greedy_recover, global_greedy_recover, greedy_over_reference_rows, q_only, qk_only)}
    for case in cases:
        r, c, n = case.args
        truth = case.expect["perm"]
        assert torch.equal(head_cases.hungarian_match(head_cases.head_cost(r, c, n)), truth), case.name  # optimal matching on Q, K, V
        assert torch.equal(recover_permutation(r, c, n), truth), case.name
        fc, fr = head_features(c, n), head_features(r, n)
        cosine = 1 - torch.nn.functional.normalize(fc, dim=1) @ torch.nn.functional.normalize(fr, dim=1).T
        for other_cost in (torch.cdist(fc, fr) ** 2, torch.cdist(fc, fr, p=1), cosine):  # other fair choices
            assert torch.equal(optimal_match(other_cost), truth), case.name
        for f in missed:
            missed[f] += not torch.equal(globals()[f](r, c, n), truth)
        if case.expect["noisy"]:
            assert not torch.equal(exact_lookup(r, c, n), truth)
    assert all(missed.values()), missed
