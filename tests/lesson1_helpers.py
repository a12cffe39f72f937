"""Lesson 1's trained model, trained once per test session and shared by every lesson-1 test file."""

from __future__ import annotations

import functools

from toyattn.training import TrainedModel, train_one_head


@functools.cache
def trained_one_head(d_head: int = 20, positions: bool = True, skip: bool = True) -> TrainedModel:
    """The default recipe on the CPU with the lesson's seed (77); cached, so it trains once per session."""
    return train_one_head(d_head=d_head, positions=positions, skip=skip, device="cpu", progress=False)
