"""Style-based recalibration: ``srm``.

Lee, Kim, Nam, "SRM: A Style-based Recalibration Module for Convolutional Neural Networks",
ICCV 2019, https://arxiv.org/abs/1903.10829; authors' code
https://github.com/hyunjaelee410/style-based-recalibration-module.

Math, per sample and channel, with statistics over ALL spatial axes:

- style pooling ``t_c = [mu_c, sigma_c]`` with ``mu_c`` the mean and
  ``sigma_c = sqrt(var_c + eps)`` (population variance);
- style integration ``z_c = w_c0 * mu_c + w_c1 * sigma_c`` (channel-wise fully connected, two
  weights per channel, zero at initialisation as in the authors' code);
- gate ``g_c = sigmoid(norm(z_c))``, output ``x * g``.

Departures from the paper and the authors' code:

- ``norm``: the authors use BatchNorm over the pooled ``(N, C)`` vector, which cannot train at
  batch size 1 (one value per channel) and mixes the samples of a batch. By default
  (``norm="affine"``) we use a learnable per-channel scale and shift with no batch statistics:
  the form BatchNorm takes at inference, with the same ``2*C`` parameters. ``norm="batch"``
  restores the authors' BatchNorm (needs batches of 2 or more in training).
- ``sigma`` uses the population variance (``correction=0``) so that ``|S| = 1`` (a 1x1x1
  bottleneck) gives ``sigma = sqrt(eps)`` instead of the NaN of the unbiased estimate.

With ``w = 0`` the gate starts at exactly ``sigmoid(0) = 0.5`` for every input.

Example:
    >>> import torch
    >>> srm = StyleRecalibration(channels=16, spatial_dims=3)
    >>> srm(torch.randn(2, 16, 5, 6, 7)).shape
    torch.Size([2, 16, 5, 6, 7])
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor, nn

from segattn.attention._gate import ChannelGate, as_channel_gate
from segattn.attention.registry import register
from segattn.layers import check_positive_int, check_spatial_dims, reduce_dims

__all__ = ["ChannelAffine", "StyleRecalibration", "style_pool"]

NORMS = ("affine", "batch")


def style_pool(x: Tensor, eps: float = 1e-5) -> tuple[Tensor, Tensor]:
    """Per-channel mean and standard deviation over all spatial axes.

    Args:
        x: ``(N, C, *spatial)``.
        eps: added to the population variance before the square root.

    Returns:
        ``(mu, sigma)``, each ``(N, C)``; ``sigma = sqrt(var + eps) > 0`` even for one position.
    """
    var, mu = torch.var_mean(x, dim=reduce_dims(x.ndim), correction=0)
    return mu, (var + eps).sqrt()


class ChannelAffine(nn.Module):
    """Learnable per-channel ``z * weight + bias`` on ``(N, C)``; weight 1, bias 0 at start.

    BatchNorm's inference-time form without batch statistics, so it trains at batch size 1.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, z: Tensor) -> Tensor:
        """``z: (N, C) -> (N, C)``."""
        return z * self.weight + self.bias


@register("srm", paper="Lee et al., ICCV 2019", url="https://arxiv.org/abs/1903.10829")
class StyleRecalibration(ChannelGate):
    """Style-based recalibration for ``(N, C, *spatial)`` tensors in 1D, 2D or 3D.

    Parameters: ``4*C`` (``cfc``: 2 per channel; the norm: scale and shift per channel).

    Args:
        channels: input channels ``C``.
        spatial_dims: 1, 2 or 3 (the module works for any; validated for uniformity).
        norm: ``"affine"`` (default; per-channel scale and shift, trains at batch size 1) or
            ``"batch"`` (the authors' BatchNorm over the pooled vector; batch >= 2 to train).
        eps: added to the variance before its square root.

    Raises:
        ValueError: non-positive ``channels``, bad ``spatial_dims``, unknown ``norm`` or
            non-positive ``eps``.

    Example:
        >>> import torch
        >>> srm = StyleRecalibration(channels=8)
        >>> g = srm.gate(torch.randn(2, 8, 33, 37))
        >>> g.shape, bool((g == 0.5).all())  # cfc starts at zero
        (torch.Size([2, 8, 1, 1]), True)
    """

    gate_range: ClassVar[tuple[float, float]] = (0.0, 1.0)

    def __init__(
        self, channels: int, spatial_dims: int = 2, norm: str = "affine", eps: float = 1e-5
    ) -> None:
        super().__init__()
        self.channels = check_positive_int("channels", channels)
        self.spatial_dims = check_spatial_dims(spatial_dims)
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {list(NORMS)}, got {norm!r}")
        if not (isinstance(eps, int | float) and eps > 0):
            raise ValueError(f"eps must be a positive number, got {eps!r}")
        self.eps = float(eps)
        self.cfc = nn.Parameter(torch.zeros(channels, 2))
        self.norm: nn.Module = (
            ChannelAffine(channels) if norm == "affine" else nn.BatchNorm1d(channels)
        )

    def gate(self, x: Tensor) -> Tensor:
        """Channel gate ``sigmoid(norm(w0 * mu + w1 * sigma))``.

        Args:
            x: ``(N, C, *spatial)``.

        Returns:
            ``(N, C, 1, ..., 1)`` with values in (0, 1).
        """
        mu, sigma = style_pool(x, self.eps)
        z = mu * self.cfc[:, 0] + sigma * self.cfc[:, 1]
        return as_channel_gate(torch.sigmoid(self.norm(z)), x.ndim)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, spatial_dims={self.spatial_dims}"
