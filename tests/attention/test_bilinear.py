"""Meaning of bilinear: second-order features, the two paths, the [0.5, 1) gate, batch size 1."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from segattn.attention import BilinearAttention, create
from segattn.attention.bilinear import second_order

SPATIAL = {1: (29,), 2: (33, 37), 3: (17, 19, 21)}


@pytest.mark.parametrize("k", [1, 2, 4, 7])
def test_second_order_is_the_upper_triangle_of_the_outer_product(k: int) -> None:
    z = torch.randn(2, k, 3, 4, 5)
    b = second_order(z)
    assert b.shape == (2, k * (k + 1) // 2, 3, 4, 5)
    outer = torch.einsum("ni...,nj...->nij...", z, z)  # (N, K, K, *S): fine for a test
    pairs = [(i, i + d) for d in range(k) for i in range(k - d)]  # diagonal by diagonal
    expected = torch.stack([outer[:, i, j] for i, j in pairs], dim=1)
    torch.testing.assert_close(b, expected)
    # every unordered pair exactly once
    assert sorted(pairs) == [(i, j) for i in range(k) for j in range(i, k)]


def test_second_order_backpropagates() -> None:
    z = torch.randn(1, 3, 4, 5, requires_grad=True)
    second_order(z).sum().backward()
    # d/dz_i sum_{i<=j} z_i z_j = z_i + sum_j z_j
    assert z.grad is not None
    torch.testing.assert_close(z.grad, z.detach() + z.detach().sum(1, keepdim=True))


@pytest.mark.parametrize("spatial_dims", [1, 2, 3])
def test_gate_is_sigmoid_of_global_times_local(spatial_dims: int) -> None:
    module = BilinearAttention(32, spatial_dims).eval()
    x = torch.randn(2, 32, *SPATIAL[spatial_dims])
    z = module.reduce(x)
    b = second_order(z)
    g_local = module.local_path(b)
    g_global = module.global_path(b.mean(dim=tuple(range(2, b.ndim)), keepdim=True))
    assert g_global.shape == (2, 32, *[1] * spatial_dims)
    assert g_local.shape == x.shape
    assert g_local.min() >= 0 and g_global.min() >= 0  # both paths end in a ReLU
    expected = torch.sigmoid(g_global * g_local)
    torch.testing.assert_close(module.gate(x), expected)
    torch.testing.assert_close(module(x), x * expected)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_gate_lies_in_half_open_0_5_1(spatial_dims: int) -> None:
    module = create("bilinear", 16, spatial_dims)
    assert module.gate_range == (0.5, 1.0)
    x = torch.rand(2, 16, *SPATIAL[spatial_dims]) + 0.5
    gate = module.gate(x)
    realised = module(x) / x
    torch.testing.assert_close(realised, gate)
    assert realised.min() >= 0.5 and realised.max() < 1
    assert (gate > 0.5).float().mean() > 0.05, "weak test: the gate is 0.5 everywhere"
    assert gate.flatten(2).std(dim=-1).mean() > 0, "the local path makes the gate vary in space"


def test_trains_at_batch_one_on_a_single_voxel() -> None:
    """A 1x1x1 3D bottleneck at batch size 1: the default norm has no batch statistics."""
    module = BilinearAttention(32, 3).train()
    x = torch.randn(1, 32, 1, 1, 1, requires_grad=True)
    module(x).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    for name, param in module.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), name


@pytest.mark.parametrize("channels", [1, 4, 16, 64, 256])
@pytest.mark.parametrize("norm", ["layer", "batch", "none"])
def test_widths_and_parameter_count(channels: int, norm: str) -> None:
    module = BilinearAttention(channels, 2, norm=norm)
    k = max(channels // 16, 4)
    p = k * (k + 1) // 2
    assert (module.hidden, module.pairs) == (k, p)
    affine = 2 * k + 4 * channels if norm != "none" else 0
    expected = channels * k + k + 2 * (p * channels + channels) + affine
    assert sum(q.numel() for q in module.parameters()) == expected
    norms = [m for m in module.modules() if isinstance(m, nn.GroupNorm | nn.BatchNorm2d)]
    assert len(norms) == (0 if norm == "none" else 3)


def test_layer_norm_is_one_group() -> None:
    module = BilinearAttention(64, 3)
    groups = [m for m in module.modules() if isinstance(m, nn.GroupNorm)]
    assert [g.num_groups for g in groups] == [1, 1, 1]


def test_bad_norm() -> None:
    with pytest.raises(ValueError, match="instance"):
        BilinearAttention(16, 2, norm="instance")
    with pytest.raises(ValueError, match="reduction"):
        BilinearAttention(16, 2, reduction=0)
