"""toyattn.circuits.real_text: the offline passages lesson 6 reads SmolLM2 on."""

from __future__ import annotations

import pytest


def test_passages_are_long_english_text_in_a_fixed_order():
    from toyattn.circuits.real_text import passages

    texts = passages(2000)
    assert len(texts) >= 8 and all(len(t) >= 2000 for t in texts)
    assert texts == passages(2000)
    assert sum(t.count(" the ") for t in texts[:4]) > 20
    with pytest.raises(ValueError, match="min_chars"):
        passages(10**9)
