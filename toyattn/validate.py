"""Checking the arguments every lesson's code receives: whole-number settings, with an error that says the fix.

One home for the checks that used to be written once per module (lessons 1-5 all take head counts,
step counts and sizes). Each helper returns the checked value, so a caller reads
``n_heads = positive_int(n_heads, "n_heads")``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["positive_int"]


def positive_int(value: Any, name: str, *, minimum: int = 1) -> int:
    """``value`` as an ``int`` if it is a whole number ``>= minimum`` (``True``/``False`` and floats are refused)."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        need = "an integer >= 1, i.e. a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ValueError(f"{name} must be {need}, got {value!r}.")
    return int(value)
