"""Project & Excite: ``pe``.

Rickmann, Roy, Sarasua, Navab, Wachinger, "'Project & Excite' Modules for Segmentation of
Volumetric Medical Scans", MICCAI 2019, https://arxiv.org/abs/1906.04649; authors' code
``ProjectExciteLayer`` in https://github.com/ai-med/squeeze_and_excitation.

Math: *project* averages ``x`` along each spatial axis, i.e. for every axis ``a`` the mean over
all OTHER spatial axes, a tensor that varies along ``a`` only, and broadcast-sums them to full size;
in 3D ``z[d, h, w] = mean_{H,W} x[d] + mean_{D,W} x[h] + mean_{D,H} x[w]``. *Excite* is
``sigmoid(conv2(relu(conv1(z))))`` with 1x1 convolutions ``C -> C/r -> C`` (with biases,
``r = 2``), and the output is ``x * gate`` with a gate of the full shape ``(N, C, *spatial)``.

- 2D (the analogue with two axes): ``z[h, w] = mean_W x[h] + mean_H x[w]``.
- 1D: there is no other axis to average over, so ``z = x`` and the module becomes a pointwise
  gate ``x * sigmoid(conv2(relu(conv1(x))))`` -- our choice; the paper is 3D only.

Implementation: ``conv1`` is linear, so it is applied to each small projection before the
broadcast sum (``conv1(z) = sum_a W1 z_a + b1``): the full-size ``C``-channel ``z`` is never built
and ``conv1`` costs ``O(D + H + W)`` positions instead of ``O(D*H*W)``. The hidden map and the gate
are full size, so training stores about ``(1/r + 1)`` extra copies of the input.

Memory (training): P&E keeps 2.5 copies of its input for backward (with ``r = 2``): ``x``, the
hidden map (``C / r`` channels, for ``conv2``) and the full-size sigmoid output (its gate, needed
for the product's and the sigmoid's backward). Its gate varies per channel *and* position, so it
is not a small gate; going lower means recomputing ``conv2`` in backward.

Example:
    >>> import torch
    >>> pe = ProjectExcite(channels=8, spatial_dims=3)
    >>> pe.gate(torch.randn(2, 8, 5, 6, 7)).shape
    torch.Size([2, 8, 5, 6, 7])
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from segattn.attention._gate import GatedAttention
from segattn.attention.registry import register
from segattn.layers import act_layer, conv_type, hidden_channels, reduce_dims

__all__ = ["ProjectExcite", "project"]


def project(x: Tensor) -> Tensor:
    """The full-size projection ``z``: the broadcast sum over axes ``a`` of the mean of ``x``
    over all spatial axes but ``a`` (``z = x`` for one spatial axis).

    Args:
        x: ``(N, C, *spatial)``.

    Returns:
        ``(N, C, *spatial)``.
    """
    return sum(_projections(x), torch.zeros_like(x))


def _projections(x: Tensor) -> list[Tensor]:
    """For each spatial axis, the mean over the other spatial axes (kept as size-1 axes)."""
    dims = reduce_dims(x.ndim)
    if len(dims) == 1:
        return [x]  # note: x.mean(dim=()) would average over every axis
    return [x.mean(dim=tuple(d for d in dims if d != axis), keepdim=True) for axis in dims]


@register("pe", paper="Rickmann et al., MICCAI 2019", url="https://arxiv.org/abs/1906.04649")
class ProjectExcite(GatedAttention):
    """Project & Excite for ``(N, C, *spatial)`` tensors in 1D, 2D or 3D.

    Parameters: ``2*C*h + h + C`` (two 1x1 convolutions with biases), where
    ``h = max(C // reduction, min_channels)``.

    Args:
        channels: input channels ``C``.
        spatial_dims: 1, 2 or 3; picks the convolutions.
        reduction: ratio ``r`` in ``h = C // r`` (2 in the paper and code).
        min_channels: lower bound of the hidden width ``h``.
        act: activation between the two convolutions.

    Raises:
        ValueError: non-positive ``channels``, ``reduction`` or ``min_channels``, bad
            ``spatial_dims`` or an unknown activation.

    Example:
        >>> import torch
        >>> pe = ProjectExcite(channels=8)
        >>> pe(torch.randn(2, 8, 33, 37)).shape
        torch.Size([2, 8, 33, 37])
    """

    gate_range: ClassVar[tuple[float, float]] = (0.0, 1.0)

    def __init__(
        self,
        channels: int,
        spatial_dims: int = 2,
        reduction: int = 2,
        min_channels: int = 4,
        act: str = "relu",
    ) -> None:
        super().__init__()
        self.hidden = hidden_channels(channels, reduction, min_channels)
        conv = conv_type(spatial_dims)
        self.channels = channels
        self.spatial_dims = spatial_dims
        self.conv1 = conv(channels, self.hidden, kernel_size=1)
        self.act = act_layer(act)
        self.conv2 = conv(self.hidden, channels, kernel_size=1)

    def gate(self, x: Tensor) -> Tensor:
        """Full gate ``sigmoid(conv2(act(conv1(project(x)))))``.

        Args:
            x: ``(N, C, *spatial)``.

        Returns:
            ``(N, C, *spatial)`` with values in (0, 1).
        """
        parts = _projections(x)
        if len(parts) == 1:
            hidden = self.conv1(x)
        else:
            weight = self.conv1.weight.flatten(1)  # (h, C)
            hidden = torch.einsum("hc,nc...->nh...", weight, parts[0])
            for part in parts[1:]:
                hidden = hidden + torch.einsum("hc,nc...->nh...", weight, part)
            if self.conv1.bias is not None:
                hidden = hidden + self.conv1.bias.view(1, -1, *[1] * (x.ndim - 2))
        return torch.sigmoid(self.conv2(self.act(hidden)))

    def extra_repr(self) -> str:
        return f"channels={self.channels}, hidden={self.hidden}, spatial_dims={self.spatial_dims}"
