"""Shared base classes for attention modules that return ``x * gate(x)``."""

from __future__ import annotations

from abc import ABC, abstractmethod

from torch import Tensor, nn

from segattn.attention.lean import gate_product

__all__ = ["ChannelGate", "GatedAttention", "as_channel_gate"]


def as_channel_gate(weights: Tensor, ndim: int) -> Tensor:
    """Reshape per-channel weights ``(N, C)`` (or ``(N, 1, C)``) to ``(N, C, 1, ..., 1)``.

    Args:
        weights: one value per sample and channel.
        ndim: number of axes of the input ``(N, C, *spatial)`` the gate broadcasts over.

    Example:
        >>> import torch
        >>> as_channel_gate(torch.ones(2, 8), 5).shape
        torch.Size([2, 8, 1, 1, 1])
    """
    return weights.view(weights.shape[0], weights.shape[-1], *[1] * (ndim - 2))


class GatedAttention(nn.Module, ABC):
    """An attention module whose output is ``x * gate(x)``; subclasses define ``gate``.

    The product is :func:`segattn.attention.lean.gate_product`: the backward pass keeps ``x`` and
    the gate, not the product.
    """

    @abstractmethod
    def gate(self, x: Tensor) -> Tensor:
        """The multiplicative gate, broadcastable to ``x: (N, C, *spatial)``."""

    def forward(self, x: Tensor) -> Tensor:
        """Recalibrate: ``x: (N, C, *spatial) -> (N, C, *spatial)``, ``x * gate(x)``."""
        return gate_product(x, self.gate(x))


class ChannelGate(GatedAttention):
    """A pure channel gate: ``gate(x)`` is ``(N, C, 1, ..., 1)`` and is also ``channel_gate``."""

    def channel_gate(self, x: Tensor) -> Tensor:
        """The same as ``gate``: ``(N, C, *spatial) -> (N, C, 1, ..., 1)``."""
        return self.gate(x)
