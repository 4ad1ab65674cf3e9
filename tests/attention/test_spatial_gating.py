"""The fused sSE/scSE product: the plain expressions' values and gradients, its recipe, its gate."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from segattn.attention.lean import call_with_recipe, plain_autograd
from segattn.attention.spatial_gating import spatial_gate_of, spatial_gated

SHAPES = {1: (2, 6, 11), 2: (2, 6, 7, 9), 3: (2, 6, 5, 4, 7)}


def conv_gate(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """sSE's gate by the library convolution, the independent reference."""
    conv = {3: F.conv1d, 4: F.conv2d, 5: F.conv3d}[x.ndim]
    return torch.sigmoid(conv(x, weight, bias))


def inputs(dims: int, channel: bool, bias: bool, dtype: torch.dtype = torch.float64):
    g = torch.Generator().manual_seed(dims)
    shape = SHAPES[dims]
    x = torch.randn(shape, generator=g, dtype=dtype)
    w = torch.randn(1, shape[1], *[1] * dims, generator=g, dtype=dtype)
    b = torch.randn(1, generator=g, dtype=dtype) if bias else None
    c = torch.rand(shape[0], shape[1], *[1] * dims, generator=g, dtype=dtype) if channel else None
    return x, w, b, c


def grads(fn, tensors: list[torch.Tensor | None], grad: torch.Tensor):
    leaves = [t.clone().requires_grad_(True) if t is not None else None for t in tensors]
    out = fn(*leaves)
    out.backward(grad)
    return out.detach(), [t.grad if t is not None else None for t in leaves]


@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize("channel", [False, True])
@pytest.mark.parametrize("bias", [False, True])
def test_values_and_gradients_equal_the_plain_expression(dims, channel, bias) -> None:
    x, w, b, c = inputs(dims, channel, bias)
    grad = torch.randn(x.shape, dtype=x.dtype, generator=torch.Generator().manual_seed(7))

    def reference(x, w, b, c):  # conv1x1, sigmoid, product: autograd's own gradients
        s = conv_gate(x, w, b)
        return x * s if c is None else x * (c + s)

    def fused(x, w, b, c):
        return spatial_gated(x, w, b, channel_gate=c)

    ref_out, ref_grads = grads(reference, [x, w, b, c], grad)
    out, got = grads(fused, [x, w, b, c], grad)
    torch.testing.assert_close(out, ref_out, rtol=1e-12, atol=1e-12)
    for name, u, v in zip(("x", "weight", "bias", "channel gate"), got, ref_grads, strict=True):
        if v is None:
            assert u is None
        else:
            torch.testing.assert_close(u, v, rtol=1e-10, atol=1e-10, msg=name)


def test_float32_gradients_agree_to_rounding_and_plain_mode_is_autograd() -> None:
    x, w, b, c = inputs(3, True, True, torch.float32)
    grad = torch.randn(x.shape)
    out, got = grads(lambda *t: spatial_gated(t[0], t[1], t[2], t[3]), [x, w, b, c], grad)
    with plain_autograd():
        ref, want = grads(lambda *t: spatial_gated(t[0], t[1], t[2], t[3]), [x, w, b, c], grad)
    assert torch.equal(out, ref)  # same forward operations: the same bits
    for u, v in zip(got, want, strict=True):
        torch.testing.assert_close(u, v, rtol=1e-5, atol=1e-6)


def test_gate_equals_the_convolution_and_the_product_uses_it() -> None:
    x, w, b, c = inputs(2, True, True, torch.float32)
    s = spatial_gate_of(x, w, b)
    assert s.shape == (x.shape[0], 1, *x.shape[2:])
    torch.testing.assert_close(s, conv_gate(x, w, b), rtol=1e-6, atol=1e-6)
    with torch.enable_grad():
        y = spatial_gated(x.requires_grad_(True), w, b, channel_gate=c)
    assert torch.equal(y, x * (c + s))


def test_only_requested_gradients_and_non_contiguous_input() -> None:
    x, w, b, c = inputs(2, True, True)
    x = x.permute(0, 1, 3, 2)  # not contiguous
    w_leaf = w.clone().requires_grad_(True)
    y = spatial_gated(x, w_leaf, b, channel_gate=c)  # only the weight needs a gradient
    y.sum().backward()
    ref = w.clone().requires_grad_(True)
    (x * (c + conv_gate(x, ref, b))).sum().backward()
    torch.testing.assert_close(w_leaf.grad, ref.grad, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("channel", [False, True])
def test_recipe_recomputes_the_same_bits(channel: bool) -> None:
    x, w, b, c = inputs(3, channel, True, torch.float32)
    x.requires_grad_(True)
    y, recipe = call_with_recipe(lambda t: spatial_gated(t, w, b, channel_gate=c), x)
    assert recipe is not None
    assert recipe.tensors[0] is x
    assert all(t.numel() < x.numel() for t in recipe.tensors[1:])  # only small gates besides x
    assert torch.equal(recipe.recompute(), y)


def test_falls_back_to_the_plain_expression_without_grad_and_under_autocast() -> None:
    x, w, b, c = inputs(2, True, True, torch.float32)
    with torch.no_grad():
        assert call_with_recipe(lambda t: spatial_gated(t, w, b, channel_gate=c), x)[1] is None
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = spatial_gated(x.requires_grad_(True), w, b, channel_gate=c)
    assert y.grad_fn is not None and "SpatialGated" not in type(y.grad_fn).__name__
