"""Tests of ``toyattn.validate``: whole-number arguments, and errors that name the argument and the fix."""

from __future__ import annotations

import numpy as np
import pytest

from toyattn.validate import positive_int


def test_positive_int_gives_back_a_plain_int_for_python_and_numpy_integers():
    assert positive_int(3, "n_heads") == 3
    value = positive_int(np.int64(5), "steps")
    assert value == 5 and type(value) is int
    assert positive_int(0, "gap", minimum=0) == 0


@pytest.mark.parametrize("bad", [0, -2, True, False, 2.0, "3", None])
def test_positive_int_refuses_what_is_not_a_positive_whole_number_and_names_the_argument(bad):
    with pytest.raises(ValueError, match=r"n_heads must be an integer >= 1, i.e. a positive integer, got"):
        positive_int(bad, "n_heads")


def test_positive_int_says_the_minimum_when_it_is_not_one():
    with pytest.raises(ValueError, match=r"seq_len must be an integer >= 4, got 3\."):
        positive_int(3, "seq_len", minimum=4)
