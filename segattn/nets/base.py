"""What every registered network shares: input checks, padding to the pooling grid and back,
one attention module per block, ``config`` and ``attention_modules()``.

Attention keys (a convention other code relies on, e.g. the attention lens):
``attention_modules()`` returns a ``dict`` in forward order with keys ``"encoder.<i>"`` (``i = 0``
at full resolution), ``"bottleneck"`` and ``"decoder.<j>"`` (``j = 0`` is the deepest decoder
level, the first after the bottleneck), leaving out positions that hold ``nn.Identity``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from segattn.attention import AttentionSpec, create
from segattn.layers import check_positive_int, check_spatial_dims

__all__ = ["SegmentationNet", "attention_factory", "crop_to", "pad_to_multiple"]


def attention_factory(
    attention: AttentionSpec, attention_kwargs: Mapping[str, Any] | None, spatial_dims: int
) -> Callable[[int], nn.Module]:
    """``width -> a new attention module`` (``nn.Identity`` for ``None``/``"none"``).

    Every call builds a new module, so no two blocks share one.

    Raises:
        TypeError: ``attention_kwargs`` is not a mapping.
    """
    if attention_kwargs is None:
        attention_kwargs = {}
    if not isinstance(attention_kwargs, Mapping):
        raise TypeError(f"attention_kwargs must be a mapping, got {attention_kwargs!r}")
    options = dict(attention_kwargs)

    def make(width: int) -> nn.Module:
        return create(attention, width, spatial_dims, **options)

    return make


def pad_to_multiple(x: Tensor, divisor: int) -> Tensor:
    """Replicate-pad the far end of every spatial axis of ``x: (N, C, *spatial)`` up to a
    multiple of ``divisor``."""
    pad: list[int] = []
    for size in reversed(x.shape[2:]):
        pad += [0, -size % divisor]
    return F.pad(x, pad, mode="replicate") if any(pad) else x


def crop_to(x: Tensor, spatial: tuple[int, ...], factor: int = 1) -> Tensor:
    """Crop ``x: (N, C, *spatial')`` to ``ceil(s / factor)`` along every spatial axis."""
    keep = tuple(slice(0, -(-s // factor)) for s in spatial)
    return x[(slice(None), slice(None)) + keep]


class SegmentationNet(nn.Module):
    """Base of the encoder-decoder networks with ``depth`` 2x poolings.

    Subclasses build their layers, call :meth:`_set_config`, implement :meth:`_forward` on
    inputs padded to a multiple of ``2**depth`` and :meth:`_attention_slots`.

    Args:
        spatial_dims: 1, 2 or 3.
        in_channels: input channels.
        num_classes: output classes.
        depth: number of 2x poolings; inputs need at least ``2**depth`` voxels per axis.
    """

    net_name = ""

    def __init__(self, spatial_dims: int, in_channels: int, num_classes: int, depth: int) -> None:
        super().__init__()
        self.spatial_dims = check_spatial_dims(spatial_dims)
        self.in_channels = check_positive_int("in_channels", in_channels)
        self.num_classes = check_positive_int("num_classes", num_classes)
        self.depth = check_positive_int("depth", depth)
        self.size_divisor = 2**depth
        self._config: dict[str, Any] = {}

    def _set_config(self, **config: Any) -> None:
        self._config = copy.deepcopy(config)

    @property
    def config(self) -> dict[str, Any]:
        """The constructor arguments: ``type(net)(**net.config)`` rebuilds the same architecture.

        JSON-serialisable as long as ``attention`` was given by name (or ``None``).
        """
        return copy.deepcopy(self._config)

    def _attention_slots(self) -> list[tuple[str, nn.Module]]:
        """``(key, module)`` for every block in forward order (see the module docstring)."""
        raise NotImplementedError

    def attention_modules(self) -> dict[str, nn.Module]:
        """Attention modules in forward order, keyed ``encoder.<i>``, ``bottleneck``,
        ``decoder.<j>``; ``nn.Identity`` slots are left out."""
        return {k: m for k, m in self._attention_slots() if not isinstance(m, nn.Identity)}

    def check_input(self, x: Tensor) -> None:
        """Raise ``ValueError`` for a wrong rank, channel count or a too small spatial size."""
        if x.ndim != self.spatial_dims + 2 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"expected input (N, {self.in_channels}, <{self.spatial_dims} spatial axes>), "
                f"got {tuple(x.shape)}"
            )
        small = [s for s in x.shape[2:] if s < self.size_divisor]
        if small:
            raise ValueError(
                f"input {tuple(x.shape[2:])} is too small for {self.net_name or 'the network'} "
                f"of depth {self.depth}: every spatial axis needs at least "
                f"2**{self.depth} = {self.size_divisor} voxels (use a larger input or a smaller "
                "depth)"
            )

    def forward(self, x: Tensor) -> Tensor:
        """Segment ``x``.

        Args:
            x: ``(N, in_channels, *spatial)``, every spatial size at least ``2**depth``.

        Returns:
            Logits ``(N, num_classes, *spatial)``.
        """
        self.check_input(x)
        spatial = tuple(x.shape[2:])
        return crop_to(self._forward(pad_to_multiple(x, self.size_divisor)), spatial)

    def _forward(self, x: Tensor) -> Tensor:
        raise NotImplementedError
