"""Layers that keep no copy of their input: values and gradients equal to the plain layers,
and what they keep for backward (measured with saved_tensors_hooks)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from segattn.layers import SavedTensorMeter, conv_transpose_type, conv_type
from segattn.layers.lean_input import (
    conv_recomputing_input,
    max_pool_indices_only,
    recomputable_conv,
)

SHAPES = {1: (2, 3, 37), 2: (2, 3, 33, 37), 3: (2, 3, 9, 11, 13)}
POOLS = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}


@pytest.mark.parametrize("spatial_dims", [1, 2, 3])
def test_max_pool_keeps_only_indices_and_matches_the_plain_pool(spatial_dims: int) -> None:
    # odd sizes: the last row/column is outside every window and gets a zero gradient
    x = torch.randn(SHAPES[spatial_dims])
    grad = torch.randn_like(POOLS[spatial_dims](x, 2))
    lean_x = x.clone().requires_grad_(True)
    with SavedTensorMeter() as meter:
        out = max_pool_indices_only(lean_x, 2)
    out.backward(grad)
    plain_x = x.clone().requires_grad_(True)
    expected = POOLS[spatial_dims](plain_x, 2)
    expected.backward(grad)
    assert torch.equal(out, expected)
    assert torch.equal(lean_x.grad, plain_x.grad)
    # one int64 index per output, nothing of the float input
    assert meter.total_bytes == out.numel() * 8
    assert [s.dtype for s in meter.saved.values()] == [torch.int64]


def test_max_pool_channels_last_input() -> None:
    x = torch.randn(2, 4, 6, 10).contiguous(memory_format=torch.channels_last)
    grad = torch.randn(2, 4, 3, 5)
    a, b = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    max_pool_indices_only(a, 2).backward(grad)
    F.max_pool2d(b, 2).backward(grad)
    assert torch.equal(a.grad, b.grad)


def test_max_pool_rejects_a_tensor_without_spatial_axes() -> None:
    with pytest.raises(ValueError, match="spatial"):
        max_pool_indices_only(torch.randn(2, 3), 2)


def _conv_layers(spatial_dims: int) -> list[nn.Module]:
    conv, up = conv_type(spatial_dims), conv_transpose_type(spatial_dims)
    return [
        conv(3, 5, kernel_size=1),
        conv(3, 4, kernel_size=3, padding=1, bias=False),
        conv(3, 6, kernel_size=3, stride=2, dilation=1, groups=3),
        up(3, 4, kernel_size=2, stride=2),
        up(3, 4, kernel_size=3, stride=2, padding=1, output_padding=1),
    ]


@pytest.mark.parametrize("spatial_dims", [1, 2, 3])
def test_conv_recomputing_input_matches_the_layer(spatial_dims: int) -> None:
    x = torch.randn(SHAPES[spatial_dims])
    gate = torch.rand(2, 3, *[1] * spatial_dims)

    def compute(t: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        return t * g

    for layer in _conv_layers(spatial_dims):
        assert recomputable_conv(layer)
        grads = []
        outs = []
        for lean in (True, False):
            layer.zero_grad(set_to_none=True)
            xi, gi = x.clone().requires_grad_(True), gate.clone().requires_grad_(True)
            with SavedTensorMeter(exclude=[layer]) as meter:
                y = compute(xi, gi)  # the product keeps x and g
                out = conv_recomputing_input(y, layer, compute, (xi, gi)) if lean else layer(y)
            out.backward(torch.ones_like(out) + out.detach())
            outs.append(out.detach())
            grads.append([xi.grad, gi.grad, *[p.grad for p in layer.parameters()]])
            if lean:  # x and g only, not y
                assert meter.total_bytes == x.nbytes + gate.nbytes
            else:
                assert meter.total_bytes == 2 * x.nbytes + gate.nbytes
        torch.testing.assert_close(outs[0], outs[1], rtol=1e-6, atol=1e-6)
        for lean_grad, plain_grad in zip(*grads, strict=True):
            torch.testing.assert_close(lean_grad, plain_grad, rtol=1e-6, atol=1e-6)


def test_conv_recomputing_input_rejects_other_layers() -> None:
    for layer in (
        nn.Linear(3, 3),
        nn.Conv2d(3, 3, 3, padding="same"),
        nn.Conv2d(3, 3, 3, 1, 1, padding_mode="reflect"),
    ):
        assert not recomputable_conv(layer)
        with pytest.raises(ValueError, match="Conv"):
            conv_recomputing_input(torch.randn(1, 3, 4, 4), layer, lambda t: t, ())
