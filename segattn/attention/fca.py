"""Frequency channel attention: ``fca``.

Qin, Zhang, Wu, Li, "FcaNet: Frequency Channel Attention Networks", ICCV 2021,
https://arxiv.org/abs/2012.11879; authors' code https://github.com/cfzd/FcaNet
(``model/layer.py``).

Math: the input is adaptively average-pooled to a fixed grid (7 cells per axis), the channels are
split into ``num_freq`` equal groups, and group ``k`` is pooled with one fixed orthonormal DCT-II
basis function ``B_k`` on that grid, ``y_c = sum_grid pool(x)_c * B_k`` (``c`` in group ``k``);
then the SE excitation without biases: ``x * sigmoid(W2 relu(W1 y))``. The frequency (0, ..., 0)
basis is constant, so ``y_c = sqrt(|grid|) * mean(pool(x)_c)``: global average pooling is the
special case (the paper's Theorem 1).

Frequencies (``dct_frequencies``):

- 2D: the paper's "top16" table (``get_freq_indices("top16")`` in the authors' code, the 16
  single frequencies that scored best on ImageNet, on a 7x7 grid; up to 32 listed). A grid of
  ``7*m`` cells per axis scales them by ``m`` as the authors do.
- 1D and 3D have no published table; we use the lowest frequencies in the L1 sense (sum of the
  indices), ties broken by the largest index and then lexicographically. In 1D that is simply
  ``0, 1, ..., num_freq - 1``; in 3D the first 16 are (0,0,0), the 3 permutations of (0,0,1),
  the 3 of (0,1,1), the 3 of (0,0,2), (1,1,1) and 5 of the 6 permutations of (0,1,2).
- Grid: 7 cells per axis in 2D (paper) and 3D (``7^3 = 343`` cells, cheap, and the same frequency
  resolution as the paper); in 1D 7 cells give only 7 frequencies, so 1D uses 49 cells (the
  paper's cell count).

Departures: the hidden width is clamped from below by ``min_channels`` (the authors' ``C // 16``
is 1 for ``C = 16``); the basis is stored once per frequency, not once per channel.

Example:
    >>> import torch
    >>> fca = FrequencyChannelAttention(channels=32, spatial_dims=3)
    >>> fca(torch.randn(2, 32, 5, 6, 7)).shape
    torch.Size([2, 32, 5, 6, 7])
"""

from __future__ import annotations

import itertools
import math
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from segattn.attention._gate import ChannelGate, as_channel_gate
from segattn.attention.registry import register
from segattn.layers import ChannelMLP, check_positive_int, check_spatial_dims, hidden_channels

__all__ = ["TOP_FREQUENCIES_7X7", "FrequencyChannelAttention", "dct_basis", "dct_frequencies"]

#: The authors' "top" frequency order on a 7x7 grid, (u, v) = (first axis, second axis).
# fmt: off
TOP_FREQUENCIES_7X7: tuple[tuple[int, int], ...] = (
    (0, 0), (0, 1), (6, 0), (0, 5), (0, 2), (1, 0), (1, 2), (4, 0),
    (5, 0), (1, 6), (3, 0), (0, 4), (0, 6), (0, 3), (3, 5), (2, 2),
    (4, 6), (6, 3), (3, 3), (5, 3), (5, 5), (2, 1), (6, 1), (5, 2),
    (5, 4), (3, 2), (3, 1), (4, 1), (2, 3), (2, 0), (6, 5), (1, 3),
)
# fmt: on

_PAPER_GRID = 7


def default_grid(spatial_dims: int) -> int:
    """Cells per axis of the pooled grid: 7 in 2D and 3D, 49 in 1D."""
    return _PAPER_GRID**2 if check_spatial_dims(spatial_dims) == 1 else _PAPER_GRID


def dct_frequencies(spatial_dims: int, num_freq: int, grid: int) -> list[tuple[int, ...]]:
    """The ``num_freq`` frequency index tuples used by ``fca`` (see the module docstring).

    Args:
        spatial_dims: 1, 2 or 3.
        num_freq: how many frequencies.
        grid: cells per axis of the pooled grid.

    Returns:
        ``num_freq`` tuples of ``spatial_dims`` indices in ``[0, grid)``.

    Raises:
        ValueError: more frequencies than the table or the grid has, or a 2D grid that is not a
            multiple of 7.

    Example:
        >>> dct_frequencies(2, 4, 7)
        [(0, 0), (0, 1), (6, 0), (0, 5)]
        >>> dct_frequencies(3, 4, 7)
        [(0, 0, 0), (0, 0, 1), (0, 1, 0), (1, 0, 0)]
    """
    check_spatial_dims(spatial_dims)
    check_positive_int("num_freq", num_freq)
    check_positive_int("grid", grid)
    if spatial_dims == 2:
        if grid % _PAPER_GRID or num_freq > len(TOP_FREQUENCIES_7X7):
            raise ValueError(
                f"2D fca uses the paper's table of {len(TOP_FREQUENCIES_7X7)} frequencies on a "
                f"7x7 grid: grid must be a multiple of 7 and num_freq <= "
                f"{len(TOP_FREQUENCIES_7X7)}, got grid={grid!r}, num_freq={num_freq!r}"
            )
        scale = grid // _PAPER_GRID
        return [(u * scale, v * scale) for u, v in TOP_FREQUENCIES_7X7[:num_freq]]
    if num_freq > grid**spatial_dims:
        raise ValueError(
            f"num_freq={num_freq!r} exceeds the {grid**spatial_dims} frequencies of a "
            f"{spatial_dims}D grid of {grid} cells per axis"
        )
    candidates = itertools.product(range(grid), repeat=spatial_dims)
    ranked = sorted(candidates, key=lambda f: (sum(f), max(f), f))
    return ranked[:num_freq]


def _dct_1d(freq: int, length: int) -> Tensor:
    """Orthonormal DCT-II basis vector ``sqrt(a/L) cos(pi * freq * (t + 1/2) / L)``."""
    t = torch.arange(length, dtype=torch.float64)
    scale = math.sqrt((1.0 if freq == 0 else 2.0) / length)
    return scale * torch.cos(math.pi * freq * (t + 0.5) / length)


def dct_basis(frequencies: list[tuple[int, ...]], grid: int) -> Tensor:
    """Separable DCT-II basis functions, one per frequency tuple.

    Args:
        frequencies: index tuples, all of the same length ``d`` (the spatial dims).
        grid: cells per axis.

    Returns:
        ``(len(frequencies), grid, ..., grid)`` float32 with ``d`` grid axes; the functions are
        orthonormal on the grid (outer products of orthonormal 1D DCT-II vectors).
    """
    basis = []
    for freq in frequencies:
        b = _dct_1d(freq[0], grid)
        for f in freq[1:]:
            b = torch.tensordot(b, _dct_1d(f, grid), dims=0)
        basis.append(b)
    return torch.stack(basis).float()


@register("fca", paper="Qin et al., ICCV 2021", url="https://arxiv.org/abs/2012.11879")
class FrequencyChannelAttention(ChannelGate):
    """Multi-spectral (DCT) channel attention for ``(N, C, *spatial)`` tensors in 1D, 2D or 3D.

    Parameters: ``2*C*h`` (two linear layers without bias), ``h = max(C // reduction,
    min_channels)``; the DCT basis is a fixed, non-persistent buffer.

    ``C`` must be a multiple of ``num_freq`` (16 by default): ``channel_multiple``.

    Args:
        channels: input channels ``C``.
        spatial_dims: 1, 2 or 3.
        num_freq: number of frequencies (channel groups); 16 as in the paper's "top16".
        grid: cells per axis of the pooled grid; ``None`` gives 7 (2D, 3D) or 49 (1D). In 2D it
            must be a multiple of 7 (the paper's frequency table is scaled to it).
        reduction: ratio ``r`` in ``h = C // r`` (16).
        min_channels: lower bound of the hidden width ``h``.

    Raises:
        ValueError: non-positive or bad arguments, ``channels`` not a multiple of ``num_freq``,
            or more frequencies than the grid (or the 2D table) offers.

    Example:
        >>> import torch
        >>> fca = FrequencyChannelAttention(channels=64)
        >>> fca.gate(torch.randn(2, 64, 33, 37)).shape
        torch.Size([2, 64, 1, 1])
    """

    gate_range: ClassVar[tuple[float, float]] = (0.0, 1.0)
    channel_multiple: ClassVar[int] = 16

    def __init__(
        self,
        channels: int,
        spatial_dims: int = 2,
        num_freq: int = 16,
        grid: int | None = None,
        reduction: int = 16,
        min_channels: int = 4,
    ) -> None:
        super().__init__()
        self.channels = check_positive_int("channels", channels)
        self.spatial_dims = check_spatial_dims(spatial_dims)
        self.num_freq = check_positive_int("num_freq", num_freq)
        if channels % num_freq:
            raise ValueError(
                f"fca splits channels into num_freq={num_freq} equal groups: channels must be a "
                f"multiple of {num_freq}, got channels={channels}"
            )
        self.grid = default_grid(spatial_dims) if grid is None else check_positive_int("grid", grid)
        self.frequencies = dct_frequencies(spatial_dims, num_freq, self.grid)
        self.hidden = hidden_channels(channels, reduction, min_channels)
        # (F, grid**d): one basis per frequency, shared by the C // F channels of its group
        self.register_buffer(
            "basis", dct_basis(self.frequencies, self.grid).flatten(1), persistent=False
        )
        self.mlp = ChannelMLP(channels, self.hidden, act="relu", bias=False)

    def frequency_pool(self, x: Tensor) -> Tensor:
        """DCT-pooled channel descriptor.

        Args:
            x: ``(N, C, *spatial)``.

        Returns:
            ``(N, C)``: channel ``c`` of group ``k`` is ``<pool(x)_c, B_k>`` on the grid.
        """
        n, c = x.shape[:2]
        pooled = _adaptive_avg_pool(x, self.grid)
        grouped = pooled.reshape(n, self.num_freq, c // self.num_freq, -1)
        basis = self.basis.to(pooled.dtype)
        return torch.einsum("nfcg,fg->nfc", grouped, basis).reshape(n, c)

    def gate(self, x: Tensor) -> Tensor:
        """Channel gate ``sigmoid(W2 relu(W1 frequency_pool(x)))``.

        Args:
            x: ``(N, C, *spatial)``.

        Returns:
            ``(N, C, 1, ..., 1)`` with values in (0, 1).
        """
        return as_channel_gate(torch.sigmoid(self.mlp(self.frequency_pool(x))), x.ndim)

    def extra_repr(self) -> str:
        return (
            f"channels={self.channels}, num_freq={self.num_freq}, grid={self.grid}, "
            f"hidden={self.hidden}, spatial_dims={self.spatial_dims}"
        )


def _adaptive_avg_pool(x: Tensor, size: int) -> Tensor:
    """``F.adaptive_avg_pool{1,2,3}d`` to ``size`` cells per spatial axis."""
    pool = (F.adaptive_avg_pool1d, F.adaptive_avg_pool2d, F.adaptive_avg_pool3d)[x.ndim - 3]
    return pool(x, size)
