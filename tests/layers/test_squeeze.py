"""spatial_mean: x.mean's values and gradient, the gradient handed on as a broadcast view."""

from __future__ import annotations

import pytest
import torch

from segattn.layers import spatial_mean


@pytest.mark.parametrize("shape", [(2, 3, 7), (2, 3, 5, 6), (2, 3, 4, 5, 6)])
def test_equals_mean_in_value_and_gradient(shape: tuple[int, ...]) -> None:
    x = torch.randn(shape, requires_grad=True)
    g = torch.randn(shape[:2])
    dims = tuple(range(2, len(shape)))
    assert torch.equal(spatial_mean(x), x.mean(dim=dims))
    (got,) = torch.autograd.grad(spatial_mean(x), x, g)
    (want,) = torch.autograd.grad(x.mean(dim=dims), x, g)
    assert torch.equal(got, want)
    assert got.stride()[2:] == (0,) * (len(shape) - 2)  # broadcast, not written out


def test_adds_into_the_other_gradient_of_the_input() -> None:
    x = torch.randn(2, 4, 5, 6, requires_grad=True)
    (x * 3 + spatial_mean(x)[..., None, None]).sum().backward()
    assert x.grad is not None
    torch.testing.assert_close(x.grad, torch.full_like(x, 4.0))  # each mean reaches 30 positions


def test_without_grad_is_plain_mean() -> None:
    x = torch.randn(2, 4, 5)
    assert spatial_mean(x).grad_fn is None
    assert torch.equal(spatial_mean(x), x.mean(dim=2))
