"""Meaning of fca: DCT basis, GAP as the zero frequency, frequency choice, channel gate."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from segattn.attention import FrequencyChannelAttention, create
from segattn.attention.fca import dct_basis, dct_frequencies

SPATIAL = {1: (29,), 2: (33, 37), 3: (17, 19, 21)}
#: The first 16 (u, v) of the paper's "top" order on 7x7 (Qin et al., authors' layer.py).
PAPER_TOP16 = [
    (0, 0), (0, 1), (6, 0), (0, 5), (0, 2), (1, 0), (1, 2), (4, 0),
    (5, 0), (1, 6), (3, 0), (0, 4), (0, 6), (0, 3), (3, 5), (2, 2),
]  # fmt: skip


@pytest.mark.parametrize(("spatial_dims", "grid"), [(1, 49), (2, 7), (2, 14), (3, 7), (3, 4)])
def test_dct_basis_is_orthonormal_on_the_grid(spatial_dims: int, grid: int) -> None:
    freqs = dct_frequencies(spatial_dims, 16, grid)
    assert len(set(freqs)) == 16
    basis = dct_basis(freqs, grid).double().flatten(1)
    assert basis.shape == (16, grid**spatial_dims)
    torch.testing.assert_close(basis @ basis.T, torch.eye(16, dtype=torch.float64))


def test_dct_basis_values_follow_the_cosine_formula() -> None:
    """B_(u,v)(i, j) = c_u c_v cos(pi u (i + 1/2) / 7) cos(pi v (j + 1/2) / 7)."""
    basis = dct_basis([(2, 5)], 7)[0]
    for i in range(7):
        for j in range(7):
            expected = (2 / 7) * math.cos(math.pi * 2 * (i + 0.5) / 7)
            expected *= math.cos(math.pi * 5 * (j + 0.5) / 7)
            assert basis[i, j].item() == pytest.approx(expected, abs=1e-6)


def test_2d_frequencies_are_the_papers_top16_and_scale_with_the_grid() -> None:
    assert dct_frequencies(2, 16, 7) == PAPER_TOP16
    assert dct_frequencies(2, 16, 14) == [(2 * u, 2 * v) for u, v in PAPER_TOP16]


def test_1d_and_3d_frequencies_are_the_lowest() -> None:
    assert dct_frequencies(1, 16, 49) == [(k,) for k in range(16)]
    freqs = dct_frequencies(3, 16, 7)
    assert freqs[0] == (0, 0, 0)
    sums = [sum(f) for f in freqs]
    assert sums == sorted(sums) and max(sums) == 3
    # every triple with an index sum below 3 is taken
    assert {f for f in freqs if sum(f) < 3} == {
        (a, b, c) for a in range(3) for b in range(3) for c in range(3) if a + b + c < 3
    }


@pytest.mark.parametrize(("spatial_dims", "size"), [(2, (14, 21)), (3, (14, 7, 21))])
def test_zero_frequency_is_global_average_pooling(spatial_dims: int, size: tuple[int, ...]) -> None:
    """FcaNet generalises GAP: with one frequency (0, ..., 0) the descriptor is
    sqrt(|grid|) * mean (exact when the grid divides the input size)."""
    module = FrequencyChannelAttention(8, spatial_dims, num_freq=1)
    assert module.frequencies == [(0,) * spatial_dims]
    x = torch.randn(2, 8, *size)
    cells = 7**spatial_dims
    expected = math.sqrt(cells) * x.mean(dim=tuple(range(2, x.ndim)))
    torch.testing.assert_close(module.frequency_pool(x), expected)


def test_frequency_pool_matches_an_independent_computation() -> None:
    """Channel group k is pooled with basis k of the adaptively pooled 7x7 map."""
    module = FrequencyChannelAttention(32, 2)  # 16 groups of 2 channels
    x = torch.randn(2, 32, 33, 37)
    pooled = F.adaptive_avg_pool2d(x, 7)
    expected = torch.empty(2, 32)
    for c in range(32):
        u, v = PAPER_TOP16[c // 2]
        cu, cv = (math.sqrt((1 if f == 0 else 2) / 7) for f in (u, v))
        total = torch.zeros(2)
        for i in range(7):
            for j in range(7):
                w = cu * math.cos(math.pi * u * (i + 0.5) / 7)
                w *= cv * math.cos(math.pi * v * (j + 0.5) / 7)
                total += w * pooled[:, c, i, j]
        expected[:, c] = total
    torch.testing.assert_close(module.frequency_pool(x), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_channel_gate_is_constant_over_positions(spatial_dims: int) -> None:
    module = create("fca", 32, spatial_dims)
    x = torch.rand(2, 32, *SPATIAL[spatial_dims]) + 0.5
    gate = module.gate(x)
    assert gate.shape == (2, 32, *[1] * spatial_dims)
    realised = module(x) / x
    torch.testing.assert_close(realised, gate.expand_as(x))
    assert realised.min() > 0 and realised.max() < 1
    torch.testing.assert_close(module.channel_gate(x), gate)


def test_gate_sees_more_than_the_mean() -> None:
    """Two inputs with equal channel means but different patterns get different gates."""
    module = FrequencyChannelAttention(16, 2)
    x = torch.randn(1, 16, 14, 14)
    y = x.flip(-1)  # same means, mirrored pattern: odd frequencies change sign
    assert not torch.allclose(module.frequency_pool(x), module.frequency_pool(y))
    assert not torch.allclose(module.gate(x), module.gate(y))


def test_tiny_inputs_work() -> None:
    """A 1x1x1 bottleneck is upsampled to the grid: only the zero frequency survives."""
    module = FrequencyChannelAttention(16, 3)
    x = torch.randn(2, 16, 1, 1, 1)
    pooled = module.frequency_pool(x)
    torch.testing.assert_close(
        pooled[:, :1], math.sqrt(343) * x[:, :1, 0, 0, 0], rtol=1e-5, atol=1e-5
    )
    torch.testing.assert_close(pooled[:, 1:], torch.zeros(2, 15), atol=1e-4, rtol=0)


def test_basis_is_not_saved_and_parameters_have_no_bias() -> None:
    module = FrequencyChannelAttention(64, 3)
    assert "basis" not in module.state_dict()
    assert module.hidden == 4
    assert sum(p.numel() for p in module.parameters()) == 2 * 64 * 4


@pytest.mark.parametrize("channels", [8, 24, 40])
def test_channels_must_be_a_multiple_of_num_freq(channels: int) -> None:
    assert FrequencyChannelAttention.channel_multiple == 16
    with pytest.raises(ValueError, match="multiple of 16"):
        FrequencyChannelAttention(channels, 2)
    FrequencyChannelAttention(channels, 2, num_freq=8)  # fewer groups fit


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"grid": 8}, "multiple of 7"),
        ({"num_freq": 33, "channels": 33 * 2}, "num_freq"),
        ({"spatial_dims": 3, "grid": 2, "num_freq": 16}, "exceeds"),
        ({"num_freq": 0}, "num_freq"),
        ({"grid": 0}, "grid"),
    ],
)
def test_bad_options(kwargs: dict[str, object], match: str) -> None:
    options: dict[str, object] = {"channels": 32, "spatial_dims": 2, **kwargs}
    with pytest.raises(ValueError, match=match):
        FrequencyChannelAttention(**options)  # type: ignore[arg-type]
