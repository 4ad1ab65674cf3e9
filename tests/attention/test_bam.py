"""Meaning of bam: a residual gate 1 + sigmoid(M_c (+ or *) M_s) in (1, 2)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from segattn.attention import BottleneckAttention, create

SPATIAL = {1: (29,), 2: (33, 37), 3: (17, 19, 21)}


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("spatial_dims", [1, 2, 3])
@pytest.mark.parametrize("combine", ["sum", "product"])
def test_bam_gate_combines_the_branches(combine: str, spatial_dims: int) -> None:
    module = create("bam", 8, spatial_dims, combine=combine)
    x = torch.randn(2, 8, *SPATIAL[spatial_dims])
    m_c = module.channel_attention(x)
    m_s = module.spatial_attention(x)
    assert m_c.shape == (2, 8, *[1] * spatial_dims)  # constant over positions
    assert m_s.shape == (2, 1, *SPATIAL[spatial_dims])  # constant over channels
    logits = m_c + m_s if combine == "sum" else m_c * m_s
    gate = module.gate(x)
    torch.testing.assert_close(gate, 1 + torch.sigmoid(logits))
    torch.testing.assert_close(module(x), x * gate)
    assert m_c.std() > 0 and m_s.std() > 0


def test_bam_default_is_the_papers_sum() -> None:
    assert BottleneckAttention(8).combine == "sum"


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize("combine", ["sum", "product"])
def test_bam_realised_gate_is_strictly_inside_1_2(combine: str, spatial_dims: int) -> None:
    module = create("bam", 8, spatial_dims, combine=combine)
    x = torch.rand(2, 8, *SPATIAL[spatial_dims]) + 0.5  # bounded away from 0: out / x is the gate
    realised = module(x) / x
    torch.testing.assert_close(realised, module.gate(x))
    assert realised.min() > 1 and realised.max() < 2


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_spatial_branch_stack_and_dilation(spatial_dims: int) -> None:
    module = BottleneckAttention(64, spatial_dims)
    convs = [m for m in module.spatial if isinstance(m, nn.Conv1d | nn.Conv2d | nn.Conv3d)]
    assert [c.kernel_size[0] for c in convs] == [1, 3, 3, 1]
    assert [c.dilation[0] for c in convs] == [1, 4, 4, 1]
    assert [c.out_channels for c in convs] == [4, 4, 4, 1]
    norms = [m for m in module.spatial if isinstance(m, nn.GroupNorm)]
    assert len(norms) == 3 and all(n.num_groups == 1 for n in norms)


def test_dilated_conv_reduces_to_its_centre_tap_on_tiny_maps() -> None:
    """On sizes <= dilation, every off-centre tap reads zero padding: shape kept, no error."""
    module = BottleneckAttention(16, 3)
    conv = module.spatial[3]
    assert isinstance(conv, nn.Conv3d) and conv.dilation == (4, 4, 4)
    x = torch.randn(2, conv.in_channels, 4, 3, 2)
    centre_only = conv.weight[..., 1:2, 1:2, 1:2]  # a 1x1x1 conv
    torch.testing.assert_close(conv(x), F.conv3d(x, centre_only, conv.bias))


def test_bam_norm_batch_is_the_papers_layer() -> None:
    module = BottleneckAttention(32, 2, norm="batch")
    assert sum(isinstance(m, nn.BatchNorm2d) for m in module.spatial) == 3
    module.train()(torch.randn(2, 32, 9, 10)).sum().backward()


@pytest.mark.parametrize("channels", [1, 4, 16, 64, 96])
@pytest.mark.parametrize("spatial_dims", [1, 2, 3])
@pytest.mark.parametrize("norm", ["group", "none"])
def test_bam_parameter_count_formula(channels: int, spatial_dims: int, norm: str) -> None:
    h = max(channels // 16, 4)
    per_norm = 2 * h if norm == "group" else h  # norm scale and shift, or the conv's bias
    channel = 2 * channels * h + h + channels
    spatial = channels * h + 2 * (h * h * 3**spatial_dims) + 3 * per_norm + h + 1
    module = BottleneckAttention(channels, spatial_dims, norm=norm)
    assert n_params(module) == channel + spatial


@pytest.mark.parametrize(
    "kwargs",
    [
        {"combine": "max"},
        {"combine": "SUM"},
        {"dilation": 0},
        {"reduction": -1},
        {"norm": "layerish"},
    ],
)
def test_bam_bad_arguments(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=str(next(iter(kwargs.values())))):
        BottleneckAttention(8, 2, **kwargs)  # type: ignore[arg-type]
