"""Meaning of eca: a local channel convolution of the pooled vector, adaptive kernel size."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from segattn.attention import EfficientChannelAttention, create
from segattn.attention.eca import adaptive_kernel_size

SPATIAL = {1: (29,), 2: (33, 37), 3: (17, 19, 21)}


def banded_matrix(kernel: Tensor, channels: int) -> Tensor:
    """``M`` with ``(M @ v)[i] = sum_t kernel[t] * v[i + t - k // 2]`` (zero outside)."""
    k = kernel.numel()
    matrix = torch.zeros(channels, channels)
    for t in range(k):
        offset = t - k // 2
        if abs(offset) < channels:
            matrix += kernel[t] * torch.diag(torch.ones(channels - abs(offset)), diagonal=offset)
    return matrix


def reference_eca(x: Tensor, module: EfficientChannelAttention) -> Tensor:
    """Independent ECA: mean of flattened positions, banded channel matrix, sigmoid."""
    n, c = x.shape[:2]
    squeezed = x.reshape(n, c, -1).sum(-1) / x[0, 0].numel()
    weights = torch.sigmoid(squeezed @ banded_matrix(module.conv.weight.flatten(), c).T)
    return x * weights[(..., *[None] * (x.ndim - 2))]


@pytest.mark.parametrize("spatial_dims", [1, 2, 3])
@pytest.mark.parametrize(("channels", "kernel_size"), [(16, 3), (16, 5), (64, None), (4, 7)])
def test_eca_matches_functional_reference(
    spatial_dims: int, channels: int, kernel_size: int | None
) -> None:
    module = EfficientChannelAttention(channels, spatial_dims, kernel_size=kernel_size)
    offsets = 2 * torch.randn(2, channels, *[1] * spatial_dims)
    x = torch.randn(2, channels, *SPATIAL[spatial_dims]) + offsets
    torch.testing.assert_close(module(x), reference_eca(x, module))
    gate = module.gate(x)
    assert not torch.allclose(gate[0], gate[1]), "weak test: the gate ignores its input"


@pytest.mark.parametrize(
    ("channels", "expected"),
    [
        (1, 1),
        (4, 1),
        (7, 1),
        (8, 3),
        (16, 3),
        (64, 3),
        (127, 3),
        (128, 5),
        (256, 5),
        (2047, 5),
        (2048, 7),
    ],
)
def test_adaptive_kernel_size_follows_the_paper(channels: int, expected: int) -> None:
    """k = odd(|(log2 C + 1) / 2|): the paper's gamma = 2, b = 1."""
    assert adaptive_kernel_size(channels) == expected
    module = EfficientChannelAttention(channels)
    assert module.kernel_size == expected
    assert sum(p.numel() for p in module.parameters()) == expected


def test_adaptive_kernel_options_and_fixed_kernel() -> None:
    assert EfficientChannelAttention(64, gamma=1, b=1).kernel_size == 7  # int(7.0) = 7
    assert EfficientChannelAttention(64, gamma=2, b=3).kernel_size == 5  # int(4.5) = 4 -> 5
    fixed = EfficientChannelAttention(256, kernel_size=3)  # the authors' code
    assert fixed.kernel_size == 3
    assert sum(p.numel() for p in fixed.parameters()) == 3


def test_gate_of_a_channel_depends_on_its_k_neighbours_only() -> None:
    module = EfficientChannelAttention(16, 3, kernel_size=5)
    x = torch.randn(1, 16, 5, 6, 7)
    y = x.clone()
    y[:, 9] += 3.0
    changed = (module.gate(x) != module.gate(y)).flatten().nonzero().flatten().tolist()
    assert changed == [7, 8, 9, 10, 11]


@pytest.mark.parametrize("spatial_dims", [1, 2, 3])
def test_eca_gate_is_per_channel_and_strictly_inside_0_1(spatial_dims: int) -> None:
    module = create("eca", 8, spatial_dims)
    x = torch.rand(2, 8, *SPATIAL[spatial_dims]) + 0.5  # bounded away from 0: out / x is the gate
    gate = module.gate(x)
    assert gate.shape == (2, 8, *[1] * spatial_dims)
    torch.testing.assert_close(module.channel_gate(x), gate)
    realised = module(x) / x
    torch.testing.assert_close(realised, gate.expand_as(x))
    assert realised.min() > 0 and realised.max() < 1


@pytest.mark.parametrize(
    "kwargs",
    [
        {"kernel_size": 2},
        {"kernel_size": 0},
        {"kernel_size": -3},
        {"kernel_size": 3.0},
        {"gamma": 0},
    ],
)
def test_eca_bad_arguments(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=str(next(iter(kwargs.values())))):
        EfficientChannelAttention(8, 2, **kwargs)  # type: ignore[arg-type]
