"""Meaning of cbam: a channel gate, then a spatial gate on the channel-gated input."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from segattn.attention import ConvolutionalBlockAttention, create

SPATIAL = {1: (29,), 2: (33, 37), 3: (17, 19, 21)}
CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def reference_cbam(x: Tensor, module: ConvolutionalBlockAttention) -> Tensor:
    """Independent CBAM: flatten positions for the channel pools, affine maps by matmul, then
    channel pools of the refined tensor and a functional convolution with the module's weights."""
    n, c, *spatial = x.shape
    flat = x.reshape(n, c, -1)
    fc1, fc2 = module.mlp.fc1, module.mlp.fc2

    def mlp(v: Tensor) -> Tensor:
        return F.relu(v @ fc1.weight.T + fc1.bias) @ fc2.weight.T + fc2.bias

    g_c = torch.sigmoid(mlp(flat.sum(-1) / flat.shape[-1]) + mlp(flat.max(-1).values))
    refined = x * g_c.reshape(n, c, *[1] * len(spatial))
    pooled = torch.stack((refined.sum(1) / c, refined.max(1).values), dim=1)
    conv = module.spatial_conv
    logits = CONV[len(spatial)](pooled, conv.weight, conv.bias, padding=conv.kernel_size[0] // 2)
    return refined * torch.sigmoid(logits)


def moderate_input(channels: int, spatial_dims: int, batch: int = 2) -> Tensor:
    offsets = torch.randn(batch, channels, *[1] * spatial_dims)  # channel means that differ
    return torch.randn(batch, channels, *SPATIAL[spatial_dims]) + offsets


@pytest.mark.parametrize("spatial_dims", [1, 2, 3])
@pytest.mark.parametrize("kernel_size", [3, 7])
def test_cbam_matches_functional_reference(spatial_dims: int, kernel_size: int) -> None:
    module = ConvolutionalBlockAttention(16, spatial_dims, reduction=4, kernel_size=kernel_size)
    x = moderate_input(16, spatial_dims)
    torch.testing.assert_close(module(x), reference_cbam(x, module))
    gate = module.gate(x)
    assert not torch.allclose(gate[0], gate[1]), "weak test: the gate ignores its input"


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_cbam_is_channel_gate_times_spatial_gate_of_the_refined_input(spatial_dims: int) -> None:
    module = create("cbam", 8, spatial_dims)
    x = moderate_input(8, spatial_dims)
    g_c = module.channel_gate(x)
    g_s = module.spatial_gate(x * g_c)
    assert g_c.shape == (2, 8, *[1] * spatial_dims)  # constant over positions
    assert g_s.shape == (2, 1, *SPATIAL[spatial_dims])  # constant over channels
    torch.testing.assert_close(module.gate(x), g_c * g_s)
    torch.testing.assert_close(module(x), x * g_c * g_s)
    # the spatial gate sees the channel-gated tensor, not x itself
    assert not torch.allclose(g_s, module.spatial_gate(x))


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_realised_gate_factors_into_channel_and_spatial_parts(spatial_dims: int) -> None:
    module = create("cbam", 8, spatial_dims)
    x = torch.rand(2, 8, *SPATIAL[spatial_dims]) + 0.5  # bounded away from 0: out / x is the gate
    realised = module(x) / x
    g_c = module.channel_gate(x)
    per_position = realised / g_c  # what is left must be the same for every channel
    torch.testing.assert_close(per_position, per_position[:, :1].expand_as(x))
    per_channel = realised / module.spatial_gate(x * g_c)  # and this the same at every position
    torch.testing.assert_close(per_channel, g_c.expand_as(x))
    assert per_position.std() > 0 and g_c.std() > 0


@pytest.mark.parametrize("spatial_dims", [1, 2, 3])
def test_cbam_gates_are_strictly_inside_0_1(spatial_dims: int) -> None:
    module = create("cbam", 8, spatial_dims)
    x = moderate_input(8, spatial_dims)
    for gate in (module.channel_gate(x), module.spatial_gate(x), module.gate(x)):
        assert gate.min() > 0 and gate.max() < 1


def test_channel_gate_uses_max_pooling_too() -> None:
    """A single spike barely moves the mean but sets the max: the channel gate must react."""
    module = ConvolutionalBlockAttention(8, 3, reduction=2, act="none")
    x = torch.randn(1, 8, 9, 10, 11)
    y = x.clone()
    y[0, 3, 4, 5, 6] = 50.0
    assert (module.channel_gate(x) - module.channel_gate(y)).abs().max() > 1e-2


def test_spatial_norm_batch_starts_at_half_like_the_authors_code() -> None:
    module = ConvolutionalBlockAttention(8, 2, spatial_norm="batch").train()
    assert module.spatial_conv.bias is None
    x = moderate_input(8, 2)
    torch.testing.assert_close(module.spatial_gate(x), torch.full((2, 1, 33, 37), 0.5))


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_cbam_trains_at_batch_one_on_a_single_position(spatial_dims: int) -> None:
    module = create("cbam", 4, spatial_dims).train()
    x = torch.randn(1, 4, *[1] * spatial_dims, requires_grad=True)
    module(x).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


@pytest.mark.parametrize("channels", [1, 4, 16, 64])
@pytest.mark.parametrize("spatial_dims", [1, 2, 3])
@pytest.mark.parametrize("kernel_size", [3, 7])
@pytest.mark.parametrize("spatial_norm", ["none", "batch"])
def test_cbam_parameter_count_formula(
    channels: int, spatial_dims: int, kernel_size: int, spatial_norm: str
) -> None:
    module = ConvolutionalBlockAttention(
        channels, spatial_dims, kernel_size=kernel_size, spatial_norm=spatial_norm
    )
    h = max(channels // 16, 4)
    spatial = 2 * kernel_size**spatial_dims + (1 if spatial_norm == "none" else 2)
    assert n_params(module) == 2 * channels * h + h + channels + spatial


@pytest.mark.parametrize(
    "kwargs",
    [
        {"kernel_size": 4},
        {"kernel_size": 0},
        {"reduction": 0},
        {"min_channels": -1},
        {"spatial_norm": "layerish"},
        {"act": "swishy"},
    ],
)
def test_cbam_bad_arguments(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=str(next(iter(kwargs.values())))):
        ConvolutionalBlockAttention(8, 2, **kwargs)  # type: ignore[arg-type]
