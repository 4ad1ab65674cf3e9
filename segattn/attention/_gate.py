"""The gate contract of the attention modules, and base classes for ``x * gate(x)`` modules.

The hooks other code finds on attention modules are written down once here as ``Protocol``
classes (checked with ``isinstance``, structurally):

- :class:`Gated`: ``gate(x)`` returns the factor ``g`` broadcastable to ``x`` with
  ``forward(x) == x * g``; ``gate_range`` (a class or instance attribute, default ``(0, 1)`` when
  absent) bounds its values. Used by the contract tests and ``segattn modules``.
- :class:`ChannelGated`: ``channel_gate(x)`` is ``(N, C, 1, ..., 1)``, one factor per channel.
- :class:`SpatialGated`: ``spatial_gate(x)`` is ``(N, 1, *spatial)``, one factor per position;
  ``spatial_after_channel`` says whether the module applies it to its input ``x`` (False) or to
  the channel-gated ``x * channel_gate(x)`` (True, CBAM's sequential order).

:func:`segattn.inspect.capture_attention` reads these hooks: ``channel_gate`` and
``spatial_gate`` where a module has them, else ``gate`` as a spatial gate. Modules that are not
``Gated`` (``sk`` mixes branches, ``enc`` ends in a ReLU) apply no single factor to their input.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Protocol, runtime_checkable

from torch import Tensor, nn

from segattn.attention.lean import gate_product

__all__ = [
    "ChannelGate",
    "ChannelGated",
    "Gated",
    "GatedAttention",
    "SpatialGated",
    "as_channel_gate",
]


@runtime_checkable
class Gated(Protocol):
    """A module whose output is ``x * gate(x)``.

    ``gate(x)``: ``(N, C, *spatial)`` -> a factor broadcastable to ``x``: ``(N, C, 1, ..., 1)``
    (channel), ``(N, 1, *spatial)`` (spatial) or ``(N, C, *spatial)`` (full). Calling it must
    not change the module's state, except for documented shared state (``dia`` with a shared
    cell advances that cell).
    """

    def gate(self, x: Tensor) -> Tensor: ...


@runtime_checkable
class ChannelGated(Protocol):
    """A module with a per-channel gate: ``channel_gate(x)``: ``(N, C, *spatial)`` ->
    ``(N, C, 1, ..., 1)``."""

    def channel_gate(self, x: Tensor) -> Tensor: ...


@runtime_checkable
class SpatialGated(Protocol):
    """A module with a per-position gate: ``spatial_gate(x)``: ``(N, C, *spatial)`` ->
    ``(N, 1, *spatial)``.

    ``spatial_after_channel``: True when the module feeds ``x * channel_gate(x)`` (not ``x``)
    to its spatial gate.
    """

    spatial_after_channel: bool

    def spatial_gate(self, x: Tensor) -> Tensor: ...


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
