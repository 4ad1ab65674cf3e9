"""The two-layer channel MLP shared by SE-style attention modules."""

from __future__ import annotations

from torch import Tensor, nn

from segattn.layers.factories import act_layer, check_positive_int

__all__ = ["ChannelMLP"]


class ChannelMLP(nn.Module):
    """``fc2(act(fc1(v)))`` on channel vectors: ``Linear(C, h) -> act -> Linear(h, C_out)``.

    Dimension-free: it acts on the last axis, so ``(N, C)`` and ``(..., N, C)`` both work.
    Parameters: ``C*h + h*C_out`` plus ``h + C_out`` with biases.

    Args:
        channels: input width ``C``.
        hidden: hidden width ``h``.
        out_channels: output width ``C_out``; None means ``C``.
        act: activation between the two layers (a ``segattn.layers.act_layer`` name).
        bias: biases in both linear layers.

    Raises:
        ValueError: a non-positive width or an unknown activation.

    Example:
        >>> import torch
        >>> mlp = ChannelMLP(8, 2)
        >>> mlp(torch.randn(3, 8)).shape, sum(p.numel() for p in mlp.parameters())
        (torch.Size([3, 8]), 42)
    """

    def __init__(
        self,
        channels: int,
        hidden: int,
        out_channels: int | None = None,
        act: str = "relu",
        bias: bool = True,
    ) -> None:
        super().__init__()
        check_positive_int("channels", channels)
        check_positive_int("hidden", hidden)
        out = channels if out_channels is None else check_positive_int("out_channels", out_channels)
        self.fc1 = nn.Linear(channels, hidden, bias=bias)
        self.act = act_layer(act)
        self.fc2 = nn.Linear(hidden, out, bias=bias)

    def forward(self, v: Tensor) -> Tensor:
        """``v: (..., C) -> (..., C_out)``."""
        return self.fc2(self.act(self.fc1(v)))
