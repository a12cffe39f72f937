"""toyattn.heads.permutations: the one permutation convention, inverses, validation, recovery accuracy."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from heads_helpers import fused

from toyattn.heads.fused_qkv import (
    permute_qkv,
    split_qkv,
)
from toyattn.heads.permutations import (
    as_permutation,
    compose_permutations,
    invert_permutation,
    random_permutation,
    recovery_accuracy,
)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_convention_inverse_and_compose():
    g = gen(3)
    w = fused(8, 5, 2, "in_out", g)
    p1, p2 = random_permutation(5, g), random_permutation(5, g)
    heads = split_qkv(w, 5, layout="in_out")
    moved = split_qkv(permute_qkv(w, p1, 5, layout="in_out"), 5, layout="in_out")
    for i in range(5):
        assert torch.equal(moved[:, i], heads[:, p1[i]])  # new head i = old head perm[i]
    back = permute_qkv(permute_qkv(w, p1, 5, layout="in_out"), invert_permutation(p1), 5, layout="in_out")
    assert torch.equal(back, w)
    two_steps = permute_qkv(permute_qkv(w, p1, 5, layout="in_out"), p2, 5, layout="in_out")
    assert torch.equal(two_steps, permute_qkv(w, compose_permutations(p1, p2), 5, layout="in_out"))
    assert torch.equal(compose_permutations(p1, invert_permutation(p1)), torch.arange(5))


def test_invert_is_not_the_identity_on_a_three_cycle():
    assert invert_permutation(torch.tensor([1, 2, 0])).tolist() == [2, 0, 1]


@pytest.mark.parametrize(
    ("perm", "n_heads", "error", "match"),
    [
        ([0, 0, 1], 3, ValueError, "appear more than once"),
        ([0, 1], 3, ValueError, "has 2 entries but the layer has n_heads=3"),
        ([0, 1, 2, 3], 3, ValueError, "has 4 entries"),
        ([0, 1, 3], 3, ValueError, "outside the head range 0..2"),
        ([0, -1, 1], 3, ValueError, "outside the head range"),
        (torch.tensor([0.0, 2.0, 1.0]), 3, TypeError, "integer head indices"),
        (np.array([0.0, 2.0, 1.0]), 3, TypeError, "integer head indices"),
        (torch.tensor([True, False, True]), 3, TypeError, "integer head indices"),
        (torch.tensor([[0, 1, 2]]), 3, ValueError, "must be 1-D"),
    ],
)
def test_bad_permutations_are_rejected_clearly(perm, n_heads, error, match):
    with pytest.raises(error, match=match):
        as_permutation(perm, n_heads)
    w = fused(6, n_heads, 2, "in_out", gen())
    with pytest.raises(error, match=match):
        permute_qkv(w, perm, n_heads, layout="in_out")


def test_good_permutations_in_any_integer_container():
    for perm in ([2, 0, 1], (2, 0, 1), np.array([2, 0, 1]), torch.tensor([2, 0, 1], dtype=torch.int32)):
        out = as_permutation(perm, 3)
        assert out.dtype == torch.int64 and out.tolist() == [2, 0, 1]


def test_recovery_accuracy():
    assert recovery_accuracy(torch.tensor([0, 1, 2, 3]), torch.tensor([0, 1, 3, 2])) == 0.5
