"""Meaning of pe: the projection (axis-wise means broadcast-summed), the excitation, the gate."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from segattn.attention import ProjectExcite, create
from segattn.attention.project_excite import project

SPATIAL = {1: (29,), 2: (33, 37), 3: (17, 19, 21)}


def test_projection_in_3d_matches_an_independent_computation() -> None:
    x = torch.randn(2, 3, 4, 5, 6, dtype=torch.float64)
    expected = torch.empty_like(x)
    for d in range(4):
        for h in range(5):
            for w in range(6):
                expected[:, :, d, h, w] = (
                    x[:, :, d, :, :].mean(dim=(-2, -1))  # average over H, W at depth d
                    + x[:, :, :, h, :].mean(dim=(-2, -1))  # over D, W at row h
                    + x[:, :, :, :, w].mean(dim=(-2, -1))  # over D, H at column w
                )
    torch.testing.assert_close(project(x), expected)


def test_projection_in_2d_and_1d() -> None:
    x = torch.randn(2, 3, 5, 7)
    expected = x.mean(dim=3, keepdim=True) + x.mean(dim=2, keepdim=True)
    torch.testing.assert_close(project(x), expected.expand_as(x))
    y = torch.randn(2, 3, 11)
    torch.testing.assert_close(project(y), y)  # no other axis to average over


@pytest.mark.parametrize("spatial_dims", [1, 2, 3])
def test_gate_is_the_excitation_of_the_projection(spatial_dims: int) -> None:
    """The cheap path (conv1 on each small projection, then broadcast) equals the paper's
    order (project to full size, then conv1)."""
    module = ProjectExcite(8, spatial_dims)
    x = torch.randn(2, 8, *SPATIAL[spatial_dims])
    conv = (F.conv1d, F.conv2d, F.conv3d)[spatial_dims - 1]
    hidden = F.relu(conv(project(x), module.conv1.weight, module.conv1.bias))
    expected = torch.sigmoid(conv(hidden, module.conv2.weight, module.conv2.bias))
    torch.testing.assert_close(module.gate(x), expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(module(x), x * expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_full_gate_in_0_1_varies_over_channels_and_positions(spatial_dims: int) -> None:
    module = create("pe", 8, spatial_dims)
    x = torch.rand(2, 8, *SPATIAL[spatial_dims]) + 0.5
    gate = module.gate(x)
    assert gate.shape == x.shape
    realised = module(x) / x
    torch.testing.assert_close(realised, gate)
    assert realised.min() > 0 and realised.max() < 1
    assert gate.std(dim=1).mean() > 0, "gate should differ between channels"
    assert gate.flatten(2).std(dim=-1).mean() > 0, "gate should differ between positions"


def test_gate_at_a_position_depends_only_on_its_axis_profiles() -> None:
    """Changing x at one voxel changes the gate exactly on the three lines through it
    (plus nothing else), since each projection averages along the other axes."""
    module = ProjectExcite(4, 3)
    x = torch.randn(1, 4, 5, 6, 7)
    y = x.clone()
    y[..., 1, 2, 3] += 10.0
    changed = (module.gate(x) - module.gate(y)).abs().amax(dim=1)[0] > 1e-6
    # every position sharing d=1, h=2 or w=3 with the voxel sees a changed projection sum
    expected = torch.zeros(5, 6, 7, dtype=torch.bool)
    expected[1] = True
    expected[:, 2] = True
    expected[:, :, 3] = True
    assert torch.equal(changed, expected)


@pytest.mark.parametrize("channels", [1, 4, 16, 64])
def test_parameter_count(channels: int) -> None:
    h = max(channels // 2, 4)
    module = ProjectExcite(channels, 3)
    assert module.hidden == h
    assert sum(p.numel() for p in module.parameters()) == 2 * channels * h + h + channels


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"reduction": 0}, "reduction"), ({"min_channels": 0}, "min_channels"), ({"act": "x"}, "x")],
)
def test_bad_options(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ProjectExcite(8, 3, **kwargs)  # type: ignore[arg-type]
