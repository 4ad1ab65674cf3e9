"""Second-order channel attention: ``soca``.

Dai, Cai, Zhang, Xia, Zhang, "Second-order Attention Network for Single Image Super-Resolution"
(SAN), CVPR 2019,
https://openaccess.thecvf.com/content_CVPR_2019/html/Dai_Second-Order_Attention_Network_for_Single_Image_Super-Resolution_CVPR_2019_paper.html
(no arXiv version); authors' code https://github.com/daitao/SAN.

Math: ``S = channel covariance of x`` (``C x C`` over all positions) ``-> Y ~= S^(1/2)`` by five
trace-normalised Newton-Schulz iterations, scaled back by ``sqrt(tr S)``; ``z_c = mean_i Y_ic``
(column mean); ``x * sigmoid(W2 relu(W1 z + b1) + b2)`` with 1x1 convolutions written as linear
layers.

Departures from the authors' code, each for 3D volumes:

- the covariance is ``Xc Xc^T / M`` (see :mod:`segattn.attention.covariance`), not a product with
  an ``M x M`` centering matrix; SAN also crops inputs larger than 1000 x 1000, which is not needed
  then;
- covariance and square root run in float32 even under autocast;
- the reduction is 16, the value SAN trains with (``--reduction 16``; the ``SOCA`` class itself
  defaults to 8), clamped from below by ``min_channels``.

Example:
    >>> import torch
    >>> soca = SecondOrderChannelAttention(channels=16, spatial_dims=3)
    >>> soca(torch.randn(2, 16, 5, 6, 7)).shape
    torch.Size([2, 16, 5, 6, 7])
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from segattn.attention._gate import ChannelGate, as_channel_gate
from segattn.attention.covariance import channel_covariance, newton_schulz_sqrt
from segattn.attention.registry import register
from segattn.layers import ChannelMLP, check_positive_int, check_spatial_dims, hidden_channels

__all__ = ["SecondOrderChannelAttention"]

SAN_URL = (
    "https://openaccess.thecvf.com/content_CVPR_2019/html/"
    "Dai_Second-Order_Attention_Network_for_Single_Image_Super-Resolution_CVPR_2019_paper.html"
)


@register("soca", paper="Dai et al., CVPR 2019", url=SAN_URL)
class SecondOrderChannelAttention(ChannelGate):
    """Second-order channel attention (SAN's SOCA) for ``(N, C, *spatial)``, 1D/2D/3D.

    Parameters: ``2*C*h + h + C`` (two linear layers with biases), where
    ``h = max(C // reduction, min_channels)``.

    Cost beyond SE: one ``(N, C, C)`` covariance (``O(N C^2 M)``) and ``iterations`` batched
    ``C x C`` matrix products; memory grows with ``C^2``, never with the number of positions
    squared.

    Args:
        channels: input channels ``C``.
        spatial_dims: 1, 2 or 3 (validated for uniformity; the math is the same).
        reduction: ratio ``r`` in ``h = C // r`` (16 as SAN is trained).
        min_channels: lower bound of the hidden width ``h``.
        iterations: Newton-Schulz iterations of the matrix square root (5 in SAN).
        act: activation between the two linear layers.

    Raises:
        ValueError: non-positive ``channels``, ``reduction``, ``min_channels`` or
            ``iterations``, bad ``spatial_dims`` or an unknown activation.

    Example:
        >>> import torch
        >>> soca = SecondOrderChannelAttention(channels=8)
        >>> soca.gate(torch.randn(2, 8, 33, 37)).shape
        torch.Size([2, 8, 1, 1])
    """

    gate_range: ClassVar[tuple[float, float]] = (0.0, 1.0)

    def __init__(
        self,
        channels: int,
        spatial_dims: int = 2,
        reduction: int = 16,
        min_channels: int = 4,
        iterations: int = 5,
        act: str = "relu",
    ) -> None:
        super().__init__()
        self.spatial_dims = check_spatial_dims(spatial_dims)
        self.channels = check_positive_int("channels", channels)
        self.iterations = check_positive_int("iterations", iterations)
        self.hidden = hidden_channels(channels, reduction, min_channels)
        self.mlp = ChannelMLP(channels, self.hidden, act=act)

    def descriptor(self, x: Tensor) -> Tensor:
        """Column means of the covariance square root, computed in float32.

        Args:
            x: ``(N, C, *spatial)``.

        Returns:
            ``(N, C)`` float32.
        """
        root = newton_schulz_sqrt(channel_covariance(x), self.iterations)
        return root.mean(dim=1)

    def gate(self, x: Tensor) -> Tensor:
        """Channel gate ``sigmoid(W2 act(W1 z))`` from the second-order descriptor ``z``.

        Args:
            x: ``(N, C, *spatial)``.

        Returns:
            ``(N, C, 1, ..., 1)`` with values in (0, 1).
        """
        z = self.descriptor(x).to(self.mlp.fc1.weight.dtype)
        return as_channel_gate(torch.sigmoid(self.mlp(z)), x.ndim)

    def extra_repr(self) -> str:
        return (
            f"channels={self.channels}, hidden={self.hidden}, iterations={self.iterations}, "
            f"spatial_dims={self.spatial_dims}"
        )
