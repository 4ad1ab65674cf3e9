"""Channel squeeze-and-excitation: ``se`` and ``cse``.

``se``: Hu, Shen, Sun, "Squeeze-and-Excitation Networks", CVPR 2018,
https://arxiv.org/abs/1709.01507 (reduction 16).

``cse``: the channel SE of Roy, Navab, Wachinger, "Concurrent Spatial and Channel
'Squeeze & Excitation' in Fully Convolutional Networks", MICCAI 2018,
https://arxiv.org/abs/1803.02579 -- the same math; the authors' code uses reduction 2, so ``cse``
is this class registered with ``reduction=2``.

``rcan``: the channel attention (``CALayer``) of Zhang et al., "Image Super-Resolution Using Very
Deep Residual Channel Attention Networks", ECCV 2018, https://arxiv.org/abs/1807.02758 -- SE with
reduction 16 written with 1x1 convolutions with biases; a 1x1 convolution on the pooled
``(N, C, 1, ..., 1)`` tensor is a linear layer, so ``rcan`` is this class registered once more
(weights stored as ``(h, C)`` instead of RCAN's ``(h, C, 1, 1)``; reshape to load them).

Math: ``x * sigmoid(W2 act(W1 GAP(x) + b1) + b2)`` with ``GAP`` the mean over all spatial axes,
``W1: C -> h`` and ``W2: h -> C``.

Example:
    >>> import torch
    >>> se = SqueezeExcitation(channels=16, spatial_dims=3, reduction=4)
    >>> se(torch.randn(2, 16, 5, 6, 7)).shape
    torch.Size([2, 16, 5, 6, 7])
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from segattn.attention._gate import ChannelGate, as_channel_gate
from segattn.attention.registry import register
from segattn.layers import ChannelMLP, check_spatial_dims, hidden_channels, spatial_mean

__all__ = ["SqueezeExcitation"]


@register(
    "cse",
    paper="Roy et al., MICCAI 2018",
    url="https://arxiv.org/abs/1803.02579",
    reduction=2,
)
@register("rcan", paper="Zhang et al., ECCV 2018", url="https://arxiv.org/abs/1807.02758")
@register("se", paper="Hu et al., CVPR 2018", url="https://arxiv.org/abs/1709.01507")
class SqueezeExcitation(ChannelGate):
    """Channel squeeze-and-excitation for ``(N, C, *spatial)`` tensors in 1D, 2D or 3D.

    Parameters: ``2*C*h + h + C`` with biases (``2*C*h`` without), where
    ``h = max(C // reduction, min_channels)``.

    The hidden width is clamped from below by ``min_channels`` so that small ``C`` never builds a
    zero-wide layer (the paper does not need this: its ``C`` is at least 64).

    Args:
        channels: input channels ``C``.
        spatial_dims: 1, 2 or 3 (the module itself works for any; validated for uniformity).
        reduction: ratio ``r`` in ``h = C // r``; 16 in Hu et al., 2 in Roy et al. (``cse``).
        min_channels: lower bound of the hidden width ``h``.
        act: activation between the two linear layers (a name from ``segattn.layers``).
        bias: use biases in both linear layers, as in the original SE.

    Raises:
        ValueError: a non-positive width, reduction or ``min_channels``, bad ``spatial_dims`` or
            an unknown activation.

    Example:
        >>> import torch
        >>> se = SqueezeExcitation(channels=8, reduction=2)
        >>> se(torch.randn(2, 8, 33, 37)).shape
        torch.Size([2, 8, 33, 37])
        >>> se.gate(torch.randn(2, 8, 33, 37)).shape
        torch.Size([2, 8, 1, 1])
    """

    gate_range: ClassVar[tuple[float, float]] = (0.0, 1.0)

    def __init__(
        self,
        channels: int,
        spatial_dims: int = 2,
        reduction: int = 16,
        min_channels: int = 4,
        act: str = "relu",
        bias: bool = True,
    ) -> None:
        super().__init__()
        self.spatial_dims = check_spatial_dims(spatial_dims)
        self.channels = channels
        self.hidden = hidden_channels(channels, reduction, min_channels)
        self.mlp = ChannelMLP(channels, self.hidden, act=act, bias=bias)

    def gate(self, x: Tensor) -> Tensor:
        """Channel gate ``sigmoid(W2 act(W1 GAP(x)))``.

        Args:
            x: ``(N, C, *spatial)``.

        Returns:
            ``(N, C, 1, ..., 1)`` with values in (0, 1).
        """
        squeezed = spatial_mean(x)
        return as_channel_gate(torch.sigmoid(self.mlp(squeezed)), x.ndim)

    def _load_from_state_dict(  # type: ignore[no-untyped-def]
        self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, errors
    ) -> None:
        # segattn <= 0.1 checkpoints (scSE models of the first release) stored the MLP as
        # ``fc1``/``fc2`` directly on this module; map them onto ``mlp.fc1``/``mlp.fc2``.
        for old in [k for k in state_dict if k.startswith((f"{prefix}fc1.", f"{prefix}fc2."))]:
            state_dict[f"{prefix}mlp.{old[len(prefix) :]}"] = state_dict.pop(old)
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, errors
        )

    def extra_repr(self) -> str:
        return f"channels={self.channels}, hidden={self.hidden}, spatial_dims={self.spatial_dims}"
