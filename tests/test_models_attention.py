"""toyattn.models.attention: the causal mask."""

from __future__ import annotations

from toyattn.models.attention import causal_mask


def test_causal_mask():
    assert causal_mask(3).tolist() == [[True, False, False], [True, True, False], [True, True, True]]
