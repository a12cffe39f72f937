"""toyattn.arrays, the one converter: tensors, arrays and lists in; checked arrays and tensors out."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from toyattn.arrays import as_float_tensor, as_matrix, to_numpy, try_numpy


def test_to_numpy_handles_grad_bfloat16_and_arrays():
    w = torch.ones(2, 3, requires_grad=True) * 2
    assert isinstance(to_numpy(w), np.ndarray) and to_numpy(w).sum() == 12
    b = torch.tensor([1.5, 2.5], dtype=torch.bfloat16)
    assert to_numpy(b).dtype == np.float32
    assert to_numpy([1, 2]).tolist() == [1, 2]


def test_try_numpy_gives_none_for_what_is_not_array_like():
    assert try_numpy(torch.tensor([True, False])).dtype == bool
    assert try_numpy(3).shape == ()
    assert try_numpy([[1, 2], [3]]) is None  # ragged
    assert try_numpy({"a": 1}) is None
    assert try_numpy("abc") is None
    assert try_numpy(None) is None


def test_as_matrix_gives_float64_from_any_input():
    x = torch.arange(6.0, requires_grad=True).reshape(2, 3)
    for given in (x, x.detach().numpy(), x.detach().tolist(), x.to(torch.bfloat16)):
        got = as_matrix(given, "W")
        assert got.dtype == np.float64 and got.shape == (2, 3)
        np.testing.assert_array_equal(got, np.arange(6.0).reshape(2, 3))
    assert as_matrix(np.array([True, False]), "mask", ndim=1).tolist() == [1.0, 0.0]


@pytest.mark.parametrize(
    "given, err, match",
    [
        (np.ones((2, 2)) * 1j, TypeError, "W holds complex numbers"),
        (torch.ones(2, 2, dtype=torch.complex64), TypeError, "W holds complex numbers"),
        ("abc", TypeError, "W must hold numbers"),
        ({"a": 1}, TypeError, "W must hold numbers"),
        ([[1.0, 2.0], [3.0]], TypeError, "W must be a tensor or array of numbers"),
        (np.ones(3), ValueError, r"W must be 2-D \[rows, cols\], got shape \(3,\)\.$"),
        (np.full((2, 2), np.nan), ValueError, "W contains NaN or inf"),
        (np.array([[1.0, -np.inf]]), ValueError, "W contains NaN or inf"),
    ],
)
def test_as_matrix_names_the_argument_and_the_problem(given, err, match):
    with pytest.raises(err, match=match):
        as_matrix(given, "W")


def test_as_matrix_hint_only_for_too_many_dimensions_and_finite_optional():
    with pytest.raises(ValueError, match="got shape \\(1, 2, 2\\). Select one"):
        as_matrix(np.ones((1, 2, 2)), "pattern", hint=" Select one.")
    with pytest.raises(ValueError, match=r"got shape \(2,\)\.$"):
        as_matrix(np.ones(2), "pattern", hint=" Select one.")
    masked = as_matrix([[0.0, -np.inf]], "scores", finite=False)
    assert np.isneginf(masked[0, 1])


def test_as_float_tensor_keeps_device_and_dtype_and_refuses_non_floats():
    x = torch.ones(2, 2, dtype=torch.float64, requires_grad=True)
    got = as_float_tensor(x, "W_q")
    assert got.dtype == torch.float64 and not got.requires_grad
    assert as_float_tensor(np.ones((2, 2), dtype=np.float32), "W_q").dtype == torch.float32
    with pytest.raises(TypeError, match="W_q must hold floating-point weights, got dtype torch.int64; convert with .float()"):
        as_float_tensor(torch.ones(2, 2, dtype=torch.long), "W_q")
    with pytest.raises(TypeError, match=r"W_q is complex \(torch.complex64\)"):
        as_float_tensor(torch.ones(2, 2, dtype=torch.complex64), "W_q")
    with pytest.raises(TypeError, match="W_q must be a torch.Tensor or NumPy array, got list"):
        as_float_tensor([[1.0]], "W_q")
