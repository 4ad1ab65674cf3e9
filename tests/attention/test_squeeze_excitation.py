"""Meaning of se, cse, sse and scse: where gates vary, their ranges, their sums, their sizes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from segattn.attention import (
    ChannelSpatialSqueezeExcitation,
    SpatialSqueezeExcitation,
    SqueezeExcitation,
    create,
)

SPATIAL = {1: (29,), 2: (33, 37), 3: (17, 19, 21)}


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def positive_input(channels: int, spatial_dims: int) -> Tensor:
    """Inputs bounded away from 0 so that ``out / x`` recovers the realised gate."""
    return torch.rand(2, channels, *SPATIAL[spatial_dims]) + 0.5


def reference_se(x: Tensor, module: SqueezeExcitation) -> Tensor:
    """Independent SE: flatten all spatial axes, average, two affine maps, ReLU, sigmoid."""
    n, c = x.shape[:2]
    squeezed = x.reshape(n, c, -1).sum(-1) / x[0, 0].numel()
    hidden = F.relu(squeezed @ module.mlp.fc1.weight.T + module.mlp.fc1.bias)
    weights = torch.sigmoid(hidden @ module.mlp.fc2.weight.T + module.mlp.fc2.bias)
    return x * weights[(..., *[None] * (x.ndim - 2))]


# --- channel SE -----------------------------------------------------------------------------


@pytest.mark.parametrize("spatial_dims", [1, 2, 3])
@pytest.mark.parametrize("reduction", [1, 2, 16])
def test_se_matches_functional_reference(spatial_dims: int, reduction: int) -> None:
    module = SqueezeExcitation(16, spatial_dims, reduction=reduction)
    offsets = 2 * torch.randn(2, 16, *[1] * spatial_dims)  # channel means that differ
    x = torch.randn(2, 16, *SPATIAL[spatial_dims]) + offsets
    torch.testing.assert_close(module(x), reference_se(x, module))
    gate = module.gate(x)
    assert not torch.allclose(gate[0], gate[1]), "weak test: the gate ignores its input"


def test_se_pools_over_every_spatial_axis_in_3d() -> None:
    """Changing only the last depth slice changes the gate (a 2-axis pool would ignore order)."""
    module = SqueezeExcitation(8, 3, reduction=2, act="none")  # no dead ReLU hiding the change
    x = torch.randn(2, 8, 17, 19, 21)
    y = x.clone()
    y[..., -1] += 3.0
    assert not torch.allclose(module.gate(x), module.gate(y))
    # and the gate is invariant to any permutation of positions (it only sees the mean)
    perm = torch.randperm(17 * 19 * 21)
    shuffled = x.reshape(2, 8, -1)[..., perm].reshape(x.shape)
    torch.testing.assert_close(module.gate(x), module.gate(shuffled))


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize("name", ["se", "cse"])
def test_channel_gate_is_constant_over_positions(name: str, spatial_dims: int) -> None:
    module = create(name, 8, spatial_dims)
    x = positive_input(8, spatial_dims)
    gate = module.gate(x)
    assert gate.shape == (2, 8, *[1] * spatial_dims)
    realised = module(x) / x
    torch.testing.assert_close(realised, gate.expand_as(x))
    assert realised.min() > 0 and realised.max() < 1


@pytest.mark.parametrize("channels", [1, 2, 3, 4, 8, 16, 64])
@pytest.mark.parametrize("reduction", [1, 2, 16])
@pytest.mark.parametrize("bias", [True, False])
def test_se_parameter_count_formula(channels: int, reduction: int, bias: bool) -> None:
    module = SqueezeExcitation(channels, reduction=reduction, bias=bias)
    h = max(channels // reduction, 4)
    assert module.hidden == h
    expected = 2 * channels * h + (h + channels if bias else 0)
    assert n_params(module) == expected


def test_hidden_width_is_clamped_by_min_channels() -> None:
    assert SqueezeExcitation(8, reduction=16, min_channels=1).hidden == 1
    assert SqueezeExcitation(8, reduction=16, min_channels=3).hidden == 3
    assert SqueezeExcitation(256, reduction=16, min_channels=3).hidden == 16


@pytest.mark.parametrize(
    "kwargs",
    [
        {"reduction": 0},
        {"reduction": -2},
        {"reduction": 1.5},
        {"min_channels": 0},
        {"act": "swishy"},
    ],
)
def test_se_bad_arguments(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=str(next(iter(kwargs.values())))):
        SqueezeExcitation(8, 2, **kwargs)  # type: ignore[arg-type]


# --- spatial SE -----------------------------------------------------------------------------


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_spatial_gate_is_identical_across_channels(spatial_dims: int) -> None:
    module = SpatialSqueezeExcitation(8, spatial_dims)
    x = positive_input(8, spatial_dims)
    gate = module.gate(x)
    assert gate.shape == (2, 1, *SPATIAL[spatial_dims])
    realised = module(x) / x
    torch.testing.assert_close(realised, realised[:, :1].expand_as(x))
    torch.testing.assert_close(realised, gate.expand_as(x))
    assert realised.min() > 0 and realised.max() < 1
    # and it varies over positions
    assert realised.std() > 0


@pytest.mark.parametrize("channels", [1, 4, 8, 64])
@pytest.mark.parametrize("spatial_dims", [1, 2, 3])
def test_sse_parameter_count(channels: int, spatial_dims: int) -> None:
    assert n_params(SpatialSqueezeExcitation(channels, spatial_dims)) == channels + 1


def test_sse_is_pointwise() -> None:
    """The gate at one position depends on that position only."""
    module = SpatialSqueezeExcitation(8, 3)
    x = torch.randn(1, 8, 5, 6, 7)
    y = x.clone()
    y[..., 2, 3, 4] += 5.0
    changed = (module.gate(x) != module.gate(y)).nonzero()
    assert changed.tolist() == [[0, 0, 2, 3, 4]]


# --- scSE -----------------------------------------------------------------------------------


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize("aggregation", ["add", "max", "mul"])
def test_scse_combines_its_gates(aggregation: str, spatial_dims: int) -> None:
    module = create("scse", 8, spatial_dims, aggregation=aggregation)
    x = torch.randn(2, 8, *SPATIAL[spatial_dims])
    g_c = module.channel_gate(x)
    g_s = module.spatial_gate(x)
    assert g_c.shape == (2, 8, *[1] * spatial_dims)
    assert g_s.shape == (2, 1, *SPATIAL[spatial_dims])
    for gate in (g_c, g_s):
        assert gate.min() > 0 and gate.max() < 1
    expected = {
        "add": x * g_c + x * g_s,
        "max": torch.maximum(x * g_c, x * g_s),
        "mul": x * g_c * g_s,
    }[aggregation]
    torch.testing.assert_close(module(x), expected)


def test_scse_default_is_add_with_gate_in_0_2() -> None:
    module = ChannelSpatialSqueezeExcitation(8, 3)
    assert module.aggregation == "add"
    x = positive_input(8, 3)
    realised = module(x) / x
    assert realised.min() > 0 and realised.max() < 2
    torch.testing.assert_close(
        realised, (module.channel_gate(x) + module.spatial_gate(x)).expand_as(x)
    )


def test_scse_branches_are_cse_and_sse() -> None:
    module = ChannelSpatialSqueezeExcitation(8, 2)
    x = torch.randn(2, 8, 33, 37)
    torch.testing.assert_close(module.channel_gate(x), module.cse.gate(x))
    torch.testing.assert_close(module.spatial_gate(x), module.sse.gate(x))
    assert module.cse.hidden == 4  # reduction 2, as in the authors' code


@pytest.mark.parametrize("channels", [1, 4, 8, 64])
@pytest.mark.parametrize("reduction", [2, 16])
def test_scse_parameter_count_formula(channels: int, reduction: int) -> None:
    module = ChannelSpatialSqueezeExcitation(channels, reduction=reduction)
    h = max(channels // reduction, 4)
    assert n_params(module) == 2 * channels * h + h + channels + channels + 1


@pytest.mark.parametrize("aggregation", ["sum", "ADD", "", None])
def test_scse_bad_aggregation(aggregation: object) -> None:
    with pytest.raises(ValueError, match="aggregation"):
        ChannelSpatialSqueezeExcitation(8, aggregation=aggregation)  # type: ignore[arg-type]


def test_scse_bad_reduction_is_reported() -> None:
    with pytest.raises(ValueError, match="reduction"):
        create("scse", 8, 3, reduction=0)


def test_state_dict_of_the_first_release_still_loads() -> None:
    """Checkpoints saved before the MLP moved to ``mlp.fc1``/``mlp.fc2`` load unchanged."""
    module = create("scse", 16, 3)
    old_style = {
        k.replace("cse.mlp.", "cse."): v.clone() + 1.0 for k, v in module.state_dict().items()
    }
    assert "cse.fc1.weight" in old_style
    fresh = create("scse", 16, 3)
    fresh.load_state_dict(old_style)  # strict
    torch.testing.assert_close(fresh.cse.mlp.fc1.weight, old_style["cse.fc1.weight"])
    torch.testing.assert_close(fresh.cse.mlp.fc2.bias, old_style["cse.fc2.bias"])
