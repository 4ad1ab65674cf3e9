"""Max pooling that keeps the argmax indices, the unpooling that puts values back there
(SegNet-style), and the encoder-decoder skeleton SD-Net and QuickNAT build on; 1D/2D/3D."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from segattn.layers import check_spatial_dims, conv_type, max_pool_type
from segattn.nets.base import SegmentationNet

__all__ = ["IndexUnpoolNet", "IndexedPool", "IndexedUnpool", "channel_dropout"]


def channel_dropout(spatial_dims: int, p: float) -> nn.Module:
    """Dropout of whole channels (``nn.Dropout1d/2d/3d``), or ``nn.Identity`` for ``p == 0``.

    Raises:
        ValueError: ``p`` outside ``[0, 1)``.
    """
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p < 1.0:
        raise ValueError(f"dropout must be a number in [0, 1), got {p!r}")
    if p == 0:
        return nn.Identity()
    return (nn.Dropout1d, nn.Dropout2d, nn.Dropout3d)[check_spatial_dims(spatial_dims) - 1](p)


class IndexedPool(nn.Module):
    """2x max pooling returning ``(pooled, indices)``.

    Example:
        >>> import torch
        >>> pooled, idx = IndexedPool(3)(torch.randn(1, 2, 4, 6, 8))
        >>> pooled.shape
        torch.Size([1, 2, 2, 3, 4])
    """

    def __init__(self, spatial_dims: int) -> None:
        super().__init__()
        self.pool = max_pool_type(spatial_dims)(kernel_size=2, stride=2, return_indices=True)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``x: (N, C, *spatial)`` (even sizes) -> ``(N, C, *spatial/2)`` twice."""
        pooled, indices = self.pool(x)
        return pooled, indices


class IndexedUnpool(nn.Module):
    """Inverse of :class:`IndexedPool`: every value goes back to its argmax position, zeros
    elsewhere.

    Written as a ``scatter`` into the flattened output instead of ``nn.MaxUnpoolNd``: the values
    are the same, but ``max_unpool`` has no deterministic implementation, so it fails under
    ``torch.use_deterministic_algorithms(True)`` (Lightning's ``deterministic=True``), which
    seeded, bit-reproducible runs need. The indices of a 2x2 pool are unique, so the scatter
    is exact, and its gradient is a ``gather``.
    """

    def __init__(self, spatial_dims: int) -> None:
        super().__init__()
        self.spatial_dims = check_spatial_dims(spatial_dims)

    def forward(self, x: Tensor, indices: Tensor, size: tuple[int, ...]) -> Tensor:
        """``x: (N, C, *spatial/2)``, ``indices`` from the pool -> ``(N, C, *size)``."""
        if len(size) != self.spatial_dims:
            raise ValueError(f"size must have {self.spatial_dims} entries, got {size!r}")
        n, c = x.shape[:2]
        out = x.new_zeros(n, c, math.prod(size))
        out = out.scatter(2, indices.flatten(2), x.flatten(2))
        return out.view(n, c, *size)


class IndexUnpoolNet(SegmentationNet):
    """The skeleton SD-Net and QuickNAT share: ``depth`` encoder blocks of one width, each
    followed by attention, channel dropout and an indexed 2x pool (the tensor before pooling is
    the skip); a bottleneck block and attention; ``depth`` decoder blocks, each reading
    ``[skip, unpool(x, indices)]`` and followed by attention and channel dropout; a 1x1 conv.

    Subclasses call :meth:`_build` with a block factory ``in_channels -> block of width
    channels``.
    """

    def _build(
        self,
        block: Callable[[int], nn.Module],
        width: int,
        attend: Callable[[int], nn.Module],
        dropout: float,
    ) -> None:
        dims, depth = self.spatial_dims, self.depth
        self.encoders = nn.ModuleList(
            block(self.in_channels if i == 0 else width) for i in range(depth)
        )
        self.encoder_attention = nn.ModuleList(attend(width) for _ in range(depth))
        self.bottleneck = block(width)
        self.bottleneck_attention = attend(width)
        # decoder lists run from the deepest level (index 0) to full resolution
        self.decoders = nn.ModuleList(block(2 * width) for _ in range(depth))
        self.decoder_attention = nn.ModuleList(attend(width) for _ in range(depth))
        self.dropout = channel_dropout(dims, dropout)
        self.pool = IndexedPool(dims)
        self.unpool = IndexedUnpool(dims)
        self.head = conv_type(dims)(width, self.num_classes, 1)

    def _attention_slots(self) -> list[tuple[str, nn.Module]]:
        return [
            *((f"encoder.{i}", m) for i, m in enumerate(self.encoder_attention)),
            ("bottleneck", self.bottleneck_attention),
            *((f"decoder.{j}", m) for j, m in enumerate(self.decoder_attention)),
        ]

    def _forward(self, x: Tensor) -> Tensor:
        skips: list[tuple[Tensor, Tensor]] = []  # (tensor before pooling, pooling indices)
        for block, attention in zip(self.encoders, self.encoder_attention, strict=True):
            skip = self.dropout(attention(block(x)))
            x, indices = self.pool(skip)
            skips.append((skip, indices))
        x = self.bottleneck_attention(self.bottleneck(x))
        for block, attention, (skip, indices) in zip(
            self.decoders, self.decoder_attention, reversed(skips), strict=True
        ):
            up = self.unpool(x, indices, tuple(skip.shape[2:]))
            x = self.dropout(attention(block(torch.cat([skip, up], dim=1))))
        return self.head(x)
