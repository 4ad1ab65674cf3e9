"""QuickNAT: a dense encoder-decoder with index unpooling, attention after every dense block.

Roy, Conjeti, Navab, Wachinger, "QuickNAT: A fully convolutional network for quick and accurate
segmentation of neuroanatomy", NeuroImage 2019, https://arxiv.org/abs/1801.04161; attention
placement as in Roy, Navab, Wachinger, MICCAI 2018, https://arxiv.org/abs/1803.02579. Block
structure and parameter count follow the authors' PyTorch code (ai-med/quickNAT_pytorch with
ai-med/nn-common-modules): 3,517,296 parameters in 2D with 1 input channel, 33 classes, 64
filters, 5x5 kernels and no attention.

Departures from the authors' code:
- every block gets its own attention module built by name (their ``CSSE`` build passes an
  argument their SE layer does not take, and an older version built none);
- ``depth`` (4 in the paper) and ``spatial_dims`` are options; inputs of any size at least
  ``2**depth`` are padded to a multiple of ``2**depth`` and the logits cropped back (the authors
  need sizes divisible by 16).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from segattn.attention import AttentionSpec
from segattn.layers import check_positive_int
from segattn.nets.base import attention_factory
from segattn.nets.dense import QuickNATDenseBlock
from segattn.nets.registry import register
from segattn.nets.unpool import IndexUnpoolNet

__all__ = ["QuickNAT"]


@register("quicknat", paper="Roy et al., NeuroImage 2019", url="https://arxiv.org/abs/1801.04161")
class QuickNAT(IndexUnpoolNet):
    """QuickNAT for ``spatial_dims`` 1, 2 or 3.

    Encoder ``i``: dense block -> attention -> channel dropout -> 2x max pool keeping the
    indices (the tensor before pooling is the skip). Bottleneck: dense block -> attention.
    Decoder ``j``: unpool with the indices of the matching encoder -> concatenate ``[skip, up]``
    -> dense block -> attention -> channel dropout. A 1x1 conv gives the logits. ``depth``
    encoders, a bottleneck and ``depth`` decoders: ``2*depth + 1`` attention modules.

    Args:
        spatial_dims: 1, 2 or 3 (the paper: 2, on slices).
        in_channels: input channels.
        num_classes: output classes, background included.
        attention: a name of ``segattn.attention.available()``, ``None``, a class or a partial.
        attention_kwargs: options of every attention module.
        features: filters of every conv (the authors' 64).
        kernel_size: odd kernel of the dense blocks' first two convs (the authors' 5).
        depth: number of encoder blocks / poolings (the authors' 4).
        dropout: channel dropout after the encoder and decoder blocks (the authors' 0.2).
        norm: normalisation name (the authors': batch).
        act: activation name (the authors': prelu).

    Raises:
        ValueError: bad sizes, depth, dropout, norm, activation or attention name.

    Example:
        >>> import torch
        >>> net = QuickNAT(2, 1, 4, attention="scse", features=16)
        >>> net(torch.randn(2, 1, 33, 37)).shape
        torch.Size([2, 4, 33, 37])
        >>> len(net.attention_modules())
        9
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        num_classes: int,
        attention: AttentionSpec = None,
        attention_kwargs: Mapping[str, Any] | None = None,
        features: int = 64,
        kernel_size: int = 5,
        depth: int = 4,
        dropout: float = 0.2,
        norm: str | None = "batch",
        act: str | None = "prelu",
    ) -> None:
        super().__init__(spatial_dims, in_channels, num_classes, depth)
        width = check_positive_int("features", features)
        attend = attention_factory(attention, attention_kwargs, spatial_dims)
        self._set_config(
            spatial_dims=spatial_dims,
            in_channels=in_channels,
            num_classes=num_classes,
            attention=attention,
            attention_kwargs=dict(attention_kwargs or {}),
            features=width,
            kernel_size=kernel_size,
            depth=depth,
            dropout=float(dropout),
            norm=norm,
            act=act,
        )

        def block(c_in: int) -> QuickNATDenseBlock:
            return QuickNATDenseBlock(spatial_dims, c_in, width, kernel_size, norm, act)

        self._build(block, width, attend, dropout)
