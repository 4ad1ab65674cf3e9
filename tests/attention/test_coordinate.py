"""Meaning of coord: one gate per spatial axis from directional pools, multiplied."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from segattn.attention import CoordinateAttention, create

SPATIAL = {1: (29,), 2: (33, 37), 3: (17, 19, 21)}


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("spatial_dims", [1, 2, 3])
def test_axis_gates_vary_along_their_own_axis_only(spatial_dims: int) -> None:
    module = create("coord", 8, spatial_dims)
    x = torch.randn(2, 8, *SPATIAL[spatial_dims])
    gates = module.axis_gates(x)
    assert len(gates) == spatial_dims  # one directional pool per axis (D, H, W in 3D)
    for axis, gate in enumerate(gates):
        expected = [2, 8] + [1] * spatial_dims
        expected[2 + axis] = SPATIAL[spatial_dims][axis]
        assert list(gate.shape) == expected  # constant along every other axis
        assert gate.std(dim=2 + axis).min() > 0  # and it does vary along its own
        assert gate.min() > 0 and gate.max() < 1


@pytest.mark.parametrize("spatial_dims", [1, 2, 3])
def test_forward_is_x_times_the_product_of_axis_gates(spatial_dims: int) -> None:
    module = create("coord", 8, spatial_dims)
    x = torch.rand(2, 8, *SPATIAL[spatial_dims]) + 0.5  # bounded away from 0: out / x is the gate
    product = torch.ones(())
    for gate in module.axis_gates(x):
        product = product * gate
    torch.testing.assert_close(module.gate(x), product.expand_as(x))
    torch.testing.assert_close(module(x), x * product)
    realised = module(x) / x
    assert realised.min() > 0 and realised.max() < 1


@pytest.mark.parametrize("flip_axis", [0, 1, 2])
def test_flipping_one_axis_flips_its_gate_and_leaves_the_others(flip_axis: int) -> None:
    """Each axis gate sees x only through the mean over the other axes."""
    module = create("coord", 8, 3)
    x = torch.randn(2, 8, 5, 6, 7)
    before = module.axis_gates(x)
    after = module.axis_gates(x.flip(2 + flip_axis))
    for axis, (g, h) in enumerate(zip(before, after)):
        if axis == flip_axis:
            torch.testing.assert_close(h, g.flip(2 + axis))
            assert not torch.allclose(h, g)
        else:
            torch.testing.assert_close(h, g)


@pytest.mark.parametrize(("channels", "mip"), [(1, 8), (64, 8), (256, 8), (512, 16), (1024, 32)])
def test_mip_is_max_8_c_over_32(channels: int, mip: int) -> None:
    module = CoordinateAttention(channels, 2)
    assert module.mip == mip
    assert module.conv.out_channels == mip


def test_shared_transform_norm_is_batch_free_by_default() -> None:
    module = CoordinateAttention(16, 3)
    assert isinstance(module.norm, nn.GroupNorm) and module.norm.num_groups == 1
    assert isinstance(module.act, nn.Hardswish)
    assert isinstance(CoordinateAttention(16, 3, norm="batch").norm, nn.BatchNorm1d)


@pytest.mark.parametrize("channels", [1, 4, 16, 64, 512])
@pytest.mark.parametrize("spatial_dims", [1, 2, 3])
@pytest.mark.parametrize("norm", ["group", "none"])
def test_coord_parameter_count_formula(channels: int, spatial_dims: int, norm: str) -> None:
    mip = max(channels // 32, 8)
    expected = channels * mip + mip + (2 * mip if norm == "group" else 0)
    expected += spatial_dims * (mip * channels + channels)
    assert n_params(CoordinateAttention(channels, spatial_dims, norm=norm)) == expected


@pytest.mark.parametrize("kwargs", [{"reduction": 0}, {"min_channels": 0}, {"norm": "layerish"}])
def test_coord_bad_arguments(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=str(next(iter(kwargs.values())))):
        CoordinateAttention(8, 2, **kwargs)  # type: ignore[arg-type]
