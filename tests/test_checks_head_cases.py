"""toyattn.checks.head_cases: the recover-permutation cases are solved by the reference and trap each mistake."""

from __future__ import annotations

import pytest
import torch
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

from toyattn import checks
from toyattn.checks import head_cases

pytestmark = pytest.mark.usefixtures("single_thread")


def greedy_recover(ref_qkv, client_qkv, n_heads):
    return greedy(torch.cdist(head_features(client_qkv, n_heads), head_features(ref_qkv, n_heads)))


def greedy_over_reference_rows(ref_qkv, client_qkv, n_heads):
    return invert_permutation(greedy(torch.cdist(head_features(ref_qkv, n_heads), head_features(client_qkv, n_heads))))


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
