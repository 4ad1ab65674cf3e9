"""Global second-order pooling channel attention: ``gsop``.

Gao, Xie, Wang, Li, "Global Second-order Pooling Convolutional Networks", CVPR 2019,
https://arxiv.org/abs/1811.12006; authors' code
https://github.com/ZilinGao/Global-Second-order-Pooling-Convolutional-Networks (GSoP-Net1,
channel attention ``chan_att``).

Math: ``z = relu(norm(conv1x1(x)))`` reduces ``C -> d`` channels; ``S = cov(z)`` is the ``d x d``
channel covariance over all positions; each row of ``S`` is normalised (``row_norm``) and
convolved on its own into 4 numbers (a grouped convolution with kernel ``(d, 1)``, ``groups=d``,
giving ``4d``); a linear layer ``4d -> C`` and a sigmoid give the channel gate:
``x * sigmoid(W vec(rowconv(rownorm(S))) + b)``.

Departures from the paper and the authors' code, each with its reason:

- ``d = min(max_channels, max(C // reduction, min_channels))`` with ``reduction=4`` and
  ``max_channels=128``: the paper's ``d = 128`` is wider than most U-Net levels (``C`` = 16..256);
  ``dim`` fixes ``d`` explicitly (``dim=128`` as in the paper).
- The covariance is ``Xc Xc^T / M`` in float32 (no ``M x M`` centering matrix; see
  :mod:`segattn.attention.covariance`).
- ``row_norm="group"`` (default) normalises every covariance row over its ``d`` entries per
  sample (``GroupNorm(d, d)``): that is what the authors' row BatchNorm computes at batch size 1,
  without coupling samples and without running statistics that differ between training with
  batch 1-2 and inference. ``row_norm="batch"`` is the authors' ``BatchNorm2d(d)``; it also trains
  at batch 1 (``d >= 2`` values per row), but its output then depends on the batch.
- ``norm`` after the reduction convolution is a one-group ``GroupNorm`` (each sample normalised
  over its ``d`` channels and all positions) instead of the authors' BatchNorm, which fails in
  training at batch 1 on a single position (3D U-Net bottlenecks can be 1x1x1).
- The authors' block applies a ReLU to its input first because it reads the pre-activation output
  of a ResNet bottleneck; in a U-Net the module follows an activation already, so there is none.
- The reduction convolution always has stride 1 (the authors use stride 2 on the first stage to
  save time).

Memory (training): GSoP keeps ``1 + 2 d / C`` copies of its input for backward (1.5x with
``d = C / 4``): ``x`` for the reduction conv, and the reduced ``d``-channel map twice (its norm's
input and its ReLU's output). The covariance is a custom autograd function that keeps the ReLU
output instead of a centred copy (:mod:`segattn.attention.covariance`), and the gate is
channel-only, so the rest is small.

Example:
    >>> import torch
    >>> gsop = GlobalSecondOrderPooling(channels=16, spatial_dims=3)
    >>> gsop(torch.randn(2, 16, 5, 6, 7)).shape
    torch.Size([2, 16, 5, 6, 7])
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor, nn

from segattn.attention._gate import ChannelGate, as_channel_gate
from segattn.attention.covariance import channel_covariance
from segattn.attention.registry import register
from segattn.layers import check_positive_int, check_spatial_dims, conv_type, norm_layer

__all__ = ["ROW_NORMS", "GlobalSecondOrderPooling"]

ROW_NORMS = ("group", "batch", "none")


@register("gsop", paper="Gao et al., CVPR 2019", url="https://arxiv.org/abs/1811.12006")
class GlobalSecondOrderPooling(ChannelGate):
    """GSoP channel attention for ``(N, C, *spatial)`` tensors in 1D, 2D or 3D.

    Parameters (defaults): ``5*C*d + 4*d^2 + 9*d + C``, where
    ``d = min(max_channels, max(C // reduction, min_channels))``: reduction convolution
    ``C*d + d``, its GroupNorm ``2*d``, row GroupNorm ``2*d``, row-wise convolution
    ``4*d*d + 4*d``, output layer ``4*d*C + C`` (``norm="none"`` or ``row_norm="none"`` drop
    their ``2*d``).

    Args:
        channels: input channels ``C``.
        spatial_dims: 1, 2 or 3; picks the reduction convolution and its norm.
        reduction: ``d = C // reduction`` before clamping.
        min_channels: lower bound of ``d``.
        max_channels: upper bound of ``d`` (128 as in the paper).
        dim: fixed ``d``, overriding the three above.
        norm: norm after the reduction convolution: ``"group"`` (one group), ``"batch"``,
            ``"instance"`` or ``"none"`` (see ``segattn.layers.norm_layer``).
        row_norm: ``"group"`` (per-sample row normalisation), ``"batch"`` (the authors' row
            BatchNorm) or ``"none"``.

    Raises:
        ValueError: non-positive ``channels``/widths, ``max_channels < min_channels``, unknown
            ``norm`` or ``row_norm``, or bad ``spatial_dims``.

    Example:
        >>> import torch
        >>> gsop = GlobalSecondOrderPooling(channels=64)
        >>> gsop.dim, gsop.gate(torch.randn(2, 64, 33, 37)).shape
        (16, torch.Size([2, 64, 1, 1]))
    """

    gate_range: ClassVar[tuple[float, float]] = (0.0, 1.0)

    def __init__(
        self,
        channels: int,
        spatial_dims: int = 2,
        reduction: int = 4,
        min_channels: int = 4,
        max_channels: int = 128,
        dim: int | None = None,
        norm: str = "group",
        row_norm: str = "group",
    ) -> None:
        super().__init__()
        self.spatial_dims = check_spatial_dims(spatial_dims)
        self.channels = check_positive_int("channels", channels)
        check_positive_int("reduction", reduction)
        check_positive_int("min_channels", min_channels)
        check_positive_int("max_channels", max_channels)
        if max_channels < min_channels:
            raise ValueError(
                f"max_channels must be >= min_channels, got {max_channels} < {min_channels}"
            )
        if dim is None:
            dim = min(max_channels, max(channels // reduction, min_channels))
        self.dim = check_positive_int("dim", dim)
        if row_norm not in ROW_NORMS:
            raise ValueError(f"row_norm must be one of {list(ROW_NORMS)}, got {row_norm!r}")
        self.row_norm_kind = row_norm

        d = self.dim
        self.reduce = conv_type(spatial_dims)(channels, d, kernel_size=1)
        self.norm = norm_layer(norm, spatial_dims, d, groups=1)
        self.act = nn.ReLU(inplace=True)
        self.row_norm: nn.Module
        if row_norm == "group":
            self.row_norm = nn.GroupNorm(d, d)
        elif row_norm == "batch":
            self.row_norm = nn.BatchNorm2d(d)
        else:
            self.row_norm = nn.Identity()
        # Row i of the covariance is input channel i with spatial size (d, 1); groups=d keeps the
        # rows apart and the (d, 1) kernel maps each to 4 numbers.
        self.row_conv = nn.Conv2d(d, 4 * d, kernel_size=(d, 1), groups=d)
        self.fc = nn.Linear(4 * d, channels)

    def covariance(self, x: Tensor) -> Tensor:
        """Covariance of the reduced features.

        Args:
            x: ``(N, C, *spatial)``.

        Returns:
            ``(N, d, d)`` float32.
        """
        return channel_covariance(self.act(self.norm(self.reduce(x))))

    def gate(self, x: Tensor) -> Tensor:
        """Channel gate from the second-order statistics of ``x``.

        Args:
            x: ``(N, C, *spatial)``.

        Returns:
            ``(N, C, 1, ..., 1)`` with values in (0, 1).
        """
        cov = self.covariance(x).to(self.fc.weight.dtype)
        rows = self.row_conv(self.row_norm(cov.unsqueeze(-1)))  # (N, 4d, 1, 1)
        return as_channel_gate(torch.sigmoid(self.fc(rows.flatten(1))), x.ndim)

    def extra_repr(self) -> str:
        return (
            f"channels={self.channels}, dim={self.dim}, row_norm={self.row_norm_kind!r}, "
            f"spatial_dims={self.spatial_dims}"
        )
