"""toyattn.circuits.copy_scoring: copy error, loss and positions, and the corrupted inputs lesson 5 patches from."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from toyattn.circuits.copy_scoring import (
    copy_accuracy,
    copy_loss,
    copy_positions,
    corrupt_first_copy,
    offset_parity_mask,
)
from toyattn.circuits.copy_task import (
    CopyTaskConfig,
    copy_error,
    make_test_sets,
)

TASK = CopyTaskConfig()


def test_corruption_replaces_odd_offsets_of_the_first_copy_only():
    batch = make_test_sets(TASK, 20, seed=5)["ood"]
    bad = corrupt_first_copy(batch, TASK.vocab_size, torch.Generator().manual_seed(0))
    for i in range(20):
        f, s, n = int(batch.first[i]), int(batch.second[i]), int(batch.length[i])
        changed = (bad[i] != batch.tokens[i]).nonzero().flatten().tolist()
        assert changed == list(range(f + 1, f + n, 2))
        assert not set(bad[i, f + 1 : f + n : 2].tolist()) & set(batch.tokens[i, f : f + n].tolist())
        assert torch.equal(bad[i, s : s + n], batch.tokens[i, s : s + n])
    even = offset_parity_mask(batch, 0)
    assert even[0, int(batch.second[0])] and not even[0, int(batch.second[0]) + 1]


def test_copy_loss_is_the_mean_cross_entropy_of_the_scored_tokens():
    batch = make_test_sets(TASK, 6, seed=3)["ood"]
    logits = torch.randn(*batch.tokens.shape, TASK.vocab_size, generator=torch.Generator().manual_seed(0))
    logp = torch.log_softmax(logits.double(), -1)
    even = offset_parity_mask(batch, 0)
    for targets in (None, even):
        mask = batch.scored if targets is None else batch.scored & targets
        expect = -np.mean([float(logp[i, j - 1, batch.tokens[i, j]]) for i, j in mask.nonzero().tolist()])
        assert abs(copy_loss(logits, batch, targets) - expect) < 1e-9
    # A perfect copier has loss near 0 and accuracy 1.
    perfect = 50.0 * torch.nn.functional.one_hot(torch.roll(batch.tokens, -1, 1), TASK.vocab_size).double()
    assert copy_loss(perfect, batch) < 1e-6 and copy_accuracy(perfect, batch) == 1.0


def test_copy_positions_cover_each_copy():
    batch = make_test_sets(TASK, 8, seed=4)["ood"]
    first, second = copy_positions(batch, "first"), copy_positions(batch, "second")
    for i in range(8):
        f, s, n = int(batch.first[i]), int(batch.second[i]), int(batch.length[i])
        assert first[i].nonzero().flatten().tolist() == list(range(f, f + n))
        assert second[i].nonzero().flatten().tolist() == list(range(s, s + n))
    assert not (first & second).any()
    with pytest.raises(ValueError, match="first"):
        copy_positions(batch, "third")


def test_a_perfect_copier_scores_zero_error_and_a_constant_one_does_not():
    tests = make_test_sets(TASK, 64)

    class Oracle(torch.nn.Module):
        """Predicts the token that followed the most recent earlier occurrence of the current token."""

        def __init__(self):
            super().__init__()
            self.dummy = torch.nn.Parameter(torch.zeros(1))

        def forward(self, tokens):
            B, T = tokens.shape
            logits = torch.zeros(B, T, TASK.vocab_size)
            for b in range(B):
                for t in range(T):
                    for s in range(t - 1, -1, -1):
                        if tokens[b, s] == tokens[b, t] and s + 1 < T:
                            logits[b, t, tokens[b, s + 1]] = 1.0
                            break
            return logits

    class Constant(Oracle):
        def forward(self, tokens):
            return torch.zeros(*tokens.shape, TASK.vocab_size)

    # Second-copy tokens are distinct within the pattern, but the background may repeat the
    # current token later than the first copy: the oracle is then misled, so the error is small, not 0.
    assert copy_error(Oracle(), tests["ood"]) < 0.2
    assert copy_error(Constant(), tests["ood"]) > 0.9
