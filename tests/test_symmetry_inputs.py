"""symmetry_score on awkward inputs: a dtype that is not a float dtype, and weights far from 1 in float32."""

from __future__ import annotations

import pytest
import torch

from toyattn.symmetry.scores import symmetry_score


@pytest.fixture
def heads():
    g = torch.Generator().manual_seed(0)
    return torch.randn(4, 64, 8, generator=g), torch.randn(4, 64, 8, generator=g)


@pytest.fixture
def big_heads():  # large enough for the CPU's head-by-head path
    g = torch.Generator().manual_seed(1)
    return torch.randn(2, 1024, 128, generator=g), torch.randn(2, 1024, 128, generator=g)


@pytest.mark.parametrize("dtype", [torch.int32, torch.bool, "float64", float])
def test_non_float_dtype_is_a_type_error(heads, dtype):
    with pytest.raises(TypeError, match="dtype must be"):
        symmetry_score(*heads, dtype=dtype)


@pytest.mark.parametrize("fixture", ["heads", "big_heads"])
@pytest.mark.parametrize("scale", [1e-11, 1e-12, 1e-20, 1e15, 1e30])
def test_scale_does_not_change_float32_scores(request, fixture, scale):
    W_q, W_k = request.getfixturevalue(fixture)
    exact = symmetry_score(W_q.double(), W_k.double())
    got = symmetry_score(W_q * scale, W_k * scale)
    torch.testing.assert_close(got, exact, rtol=0, atol=1e-6)


def test_each_side_scaled_differently(heads):
    W_q, W_k = heads
    torch.testing.assert_close(symmetry_score(W_q * 1e-9, W_k * 1e8), symmetry_score(W_q.double(), W_k.double()),
                               rtol=0, atol=1e-6)


def test_a_zero_head_is_still_reported(heads):
    W_q, W_k = heads
    W_q = W_q.clone()
    W_q[2] = 0
    with pytest.raises(ValueError, match="head"):
        symmetry_score(W_q, W_k)
