"""Meaning of sk: dilated grouped branches mixed by softmax weights that sum to 1 per channel."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from segattn.attention import SelectiveKernel, create

SPATIAL = {1: (29,), 2: (33, 37), 3: (17, 19, 21)}


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def branch_conv(module: SelectiveKernel, m: int) -> nn.Conv1d | nn.Conv2d | nn.Conv3d:
    conv = module.branches[m][0]
    assert isinstance(conv, nn.Conv1d | nn.Conv2d | nn.Conv3d)
    return conv


@pytest.mark.parametrize("spatial_dims", [1, 2, 3])
@pytest.mark.parametrize("branches", [2, 3])
def test_branch_weights_sum_to_one_at_every_channel(spatial_dims: int, branches: int) -> None:
    module = create("sk", 8, spatial_dims, branches=branches)
    x = torch.randn(2, 8, *SPATIAL[spatial_dims])
    weights = module.branch_weights(x)
    assert weights.shape == (2, branches, 8, *[1] * spatial_dims)  # constant over positions
    torch.testing.assert_close(weights.sum(dim=1), torch.ones(2, 8, *[1] * spatial_dims))
    assert weights.min() > 0 and weights.max() < 1
    assert weights.std() > 0


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_output_is_the_weighted_sum_of_branch_maps(spatial_dims: int) -> None:
    module = create("sk", 8, spatial_dims).eval()
    x = torch.randn(2, 8, *SPATIAL[spatial_dims])
    maps = module.branch_maps(x)
    weights = module.branch_weights(x)
    expected = sum(weights[:, m] * maps[m] for m in range(len(maps)))
    torch.testing.assert_close(module(x), expected)
    # it mixes branches instead of rescaling x, so there is no gate
    assert not hasattr(module, "gate")
    assert module.gate_note


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_branch_m_is_a_3x3_conv_with_dilation_m_plus_1(spatial_dims: int) -> None:
    """Impulse response of each branch conv: taps at 0 and +-(m+1) along every axis."""
    module = SelectiveKernel(4, spatial_dims, branches=3)
    size = 9
    impulse = torch.zeros(1, 4, *[size] * spatial_dims)
    impulse[(0, slice(None), *[size // 2] * spatial_dims)] = 1.0
    for m in range(3):
        conv = branch_conv(module, m)
        assert conv.bias is None  # a norm follows
        response = conv(impulse).detach().abs().sum(dim=(0, 1))
        hit = {tuple(i - size // 2 for i in idx) for idx in response.nonzero().tolist()}
        d = m + 1
        taps = {(a, b) for a in (-d, 0, d) for b in (-d, 0, d)}
        if spatial_dims == 3:
            taps = {(a, b, c) for a, b in taps for c in (-d, 0, d)}
        assert hit == taps


@pytest.mark.parametrize(("channels", "groups"), [(64, 32), (96, 32), (12, 4), (16, 16), (7, 1)])
def test_groups_are_the_gcd_with_32(channels: int, groups: int) -> None:
    module = SelectiveKernel(channels, 2)
    assert module.groups == groups
    assert branch_conv(module, 0).groups == groups


@pytest.mark.parametrize(("channels", "hidden"), [(4, 32), (64, 32), (512, 32), (1024, 64)])
def test_hidden_width_is_max_of_c_over_r_and_l(channels: int, hidden: int) -> None:
    module = SelectiveKernel(channels, 2)
    assert module.hidden == hidden
    assert module.mlp.fc1.out_features == hidden
    assert SelectiveKernel(channels, 2, min_channels=4).hidden == max(channels // 16, 4)


def test_pooled_vector_has_no_batch_norm() -> None:
    module = SelectiveKernel(16, 3)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in module.modules())
    assert isinstance(module.branches[0][1], nn.GroupNorm)
    assert module.branches[0][1].num_groups == 1


@pytest.mark.parametrize("channels", [1, 4, 16, 64, 96])
@pytest.mark.parametrize("spatial_dims", [1, 2, 3])
@pytest.mark.parametrize("branches", [2, 3])
def test_sk_parameter_count_formula(channels: int, spatial_dims: int, branches: int) -> None:
    g = {1: 1, 4: 4, 16: 16, 64: 32, 96: 32}[channels]
    d = max(channels // 16, 32)
    expected = (
        branches * (channels * (channels // g) * 3**spatial_dims + 2 * channels)
        + channels * d
        + d
        + branches * (d * channels + channels)
    )
    assert n_params(SelectiveKernel(channels, spatial_dims, branches=branches)) == expected


@pytest.mark.parametrize(
    "kwargs",
    [
        {"branches": 0},
        {"groups": 0},
        {"reduction": 0},
        {"min_channels": -2},
        {"norm": "layerish"},
        {"act": "swishy"},
    ],
)
def test_sk_bad_arguments(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=str(next(iter(kwargs.values())))):
        SelectiveKernel(8, 2, **kwargs)  # type: ignore[arg-type]
