"""FC-DenseNet ("Tiramisu"): dense blocks down and up, attention after every dense block.

Jégou, Drozdzal, Vazquez, Romero, Bengio, "The One Hundred Layers Tiramisu: Fully Convolutional
DenseNets for Semantic Segmentation", CVPRW 2017, https://arxiv.org/abs/1611.09326; attention
after every dense block as in Roy, Navab, Wachinger, MICCAI 2018,
https://arxiv.org/abs/1803.02579.

Presets (the paper's Table 2): ``fcdensenet56`` (4 layers per block, growth 12),
``fcdensenet67`` (5 layers per block, growth 16), ``fcdensenet103`` (4, 5, 7, 10, 12 layers down,
15 in the bottleneck, mirrored up, growth 16). The paper names the smallest FC-DenseNet56 (its
layer count: 44 dense-block convs, the first conv, 5 transitions down, 5 up and the classifier);
``fcdensenet57`` is not a preset name.

Departures: ``spatial_dims`` 1/2/3 and the per-block layer counts are options; the transition up
(a stride-2 3x3 transposed conv) pads so that it exactly doubles the size, and inputs of any size
at least ``2**depth`` are padded to a multiple of ``2**depth`` and cropped back, instead of the
paper's cropping of the upsampled maps.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from segattn.attention import AttentionSpec
from segattn.layers import (
    act_layer,
    check_positive_int,
    conv_transpose_type,
    conv_type,
    max_pool_type,
    norm_layer,
)
from segattn.nets.base import SegmentationNet, attention_factory
from segattn.nets.dense import DenseLayers
from segattn.nets.registry import register

__all__ = ["PRESETS", "FCDenseNet"]

#: preset name -> (growth rate, layers of the down blocks, layers of the bottleneck)
PRESETS: dict[str, tuple[int, tuple[int, ...], int]] = {
    "fcdensenet56": (12, (4, 4, 4, 4, 4), 4),
    "fcdensenet67": (16, (5, 5, 5, 5, 5), 5),
    "fcdensenet103": (16, (4, 5, 7, 10, 12), 15),
}


class TransitionDown(nn.Sequential):
    """``norm -> act -> conv1x1 (same width) -> dropout -> 2x max pool``."""

    def __init__(
        self, spatial_dims: int, channels: int, dropout: float, norm: str | None, act: str | None
    ) -> None:
        super().__init__(
            norm_layer(norm, spatial_dims, channels),
            act_layer(act, inplace=False),
            conv_type(spatial_dims)(channels, channels, 1),
            nn.Dropout(dropout) if dropout > 0 else nn.Identity(),
            max_pool_type(spatial_dims)(kernel_size=2, stride=2),
        )


@register("fcdensenet", paper="Jégou et al., CVPRW 2017", url="https://arxiv.org/abs/1611.09326")
class FCDenseNet(SegmentationNet):
    """FC-DenseNet for ``spatial_dims`` 1, 2 or 3.

    A 3x3 conv of ``stem_features`` filters; down block ``i``: dense block (output ``[x, new
    maps]``) -> attention -> skip, then transition down. Bottleneck: dense block -> attention on
    its new maps. Up block ``j``: transition up (stride-2 3x3 transposed conv on the previous
    block's new maps only) -> concatenate ``[up, skip]`` -> dense block -> attention (on its new
    maps; the last up block's whole output, which the 1x1 classifier reads). ``depth`` down
    blocks give ``2*depth + 1`` attention modules.

    Args:
        spatial_dims: 1, 2 or 3.
        in_channels: input channels.
        num_classes: output classes, background included.
        attention: a name of ``segattn.attention.available()``, ``None``, a class or a partial.
        attention_kwargs: options of every attention module.
        preset: ``fcdensenet56``, ``fcdensenet67`` or ``fcdensenet103``.
        growth_rate: filters per dense layer; overrides the preset's.
        down_layers: layers of every down block (its length is the depth; the up blocks mirror
            it); overrides the preset's.
        bottleneck_layers: layers of the bottleneck block; overrides the preset's.
        stem_features: filters of the first conv (the paper's 48).
        dropout: dropout after every dense-layer and transition-down conv (the paper's 0.2).
        norm: normalisation name (the paper: batch).
        act: activation name (the paper: relu).

    Raises:
        ValueError: an unknown preset (with the closest one), bad layer counts or attention name.

    Example:
        >>> import torch
        >>> net = FCDenseNet(2, 1, 4, attention="scse", growth_rate=4, down_layers=[2, 2],
        ...                  bottleneck_layers=2, stem_features=8)
        >>> net(torch.randn(2, 1, 33, 37)).shape
        torch.Size([2, 4, 33, 37])
        >>> len(net.attention_modules())
        5
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        num_classes: int,
        attention: AttentionSpec = None,
        attention_kwargs: Mapping[str, Any] | None = None,
        preset: str = "fcdensenet67",
        growth_rate: int | None = None,
        down_layers: Sequence[int] | None = None,
        bottleneck_layers: int | None = None,
        stem_features: int = 48,
        dropout: float = 0.2,
        norm: str | None = "batch",
        act: str | None = "relu",
    ) -> None:
        key = str(preset).strip().lower()
        if key not in PRESETS:
            close = difflib.get_close_matches(key, list(PRESETS), n=1, cutoff=0.0)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(
                f"unknown FC-DenseNet preset {preset!r}{hint}; presets: {list(PRESETS)}"
            )
        rate, down, bottom = PRESETS[key]
        rate = check_positive_int("growth_rate", rate if growth_rate is None else growth_rate)
        if down_layers is not None:
            if isinstance(down_layers, (str, bytes)) or not isinstance(down_layers, Sequence):
                raise ValueError(f"down_layers must be a list of layer counts, got {down_layers!r}")
            down = tuple(check_positive_int("every count in down_layers", n) for n in down_layers)
            if not down:
                raise ValueError("down_layers must not be empty")
        bottom = check_positive_int(
            "bottleneck_layers", bottom if bottleneck_layers is None else bottleneck_layers
        )
        if (
            isinstance(dropout, bool)
            or not isinstance(dropout, (int, float))
            or not 0 <= dropout < 1
        ):
            raise ValueError(f"dropout must be a number in [0, 1), got {dropout!r}")
        super().__init__(spatial_dims, in_channels, num_classes, len(down))
        check_positive_int("stem_features", stem_features)
        attend = attention_factory(attention, attention_kwargs, spatial_dims)
        self._set_config(
            spatial_dims=spatial_dims,
            in_channels=in_channels,
            num_classes=num_classes,
            attention=attention,
            attention_kwargs=dict(attention_kwargs or {}),
            preset=key,
            growth_rate=growth_rate,
            down_layers=None if down_layers is None else list(down),
            bottleneck_layers=bottleneck_layers,
            stem_features=stem_features,
            dropout=float(dropout),
            norm=norm,
            act=act,
        )
        self.growth_rate, self.down_layers, self.bottleneck_layers = rate, down, bottom

        def dense(c_in: int, layers: int) -> DenseLayers:
            return DenseLayers(spatial_dims, c_in, layers, rate, float(dropout), norm, act)

        conv, up_type = conv_type(spatial_dims), conv_transpose_type(spatial_dims)
        self.stem = conv(in_channels, stem_features, 3, padding=1)
        self.down_blocks = nn.ModuleList()
        self.down_attention = nn.ModuleList()
        self.transitions_down = nn.ModuleList()
        channels, skip_channels = stem_features, []
        for layers in down:
            self.down_blocks.append(dense(channels, layers))
            channels += layers * rate
            skip_channels.append(channels)
            self.down_attention.append(attend(channels))
            self.transitions_down.append(
                TransitionDown(spatial_dims, channels, float(dropout), norm, act)
            )
        self.bottleneck = dense(channels, bottom)
        self.bottleneck_attention = attend(bottom * rate)
        # up lists run from the deepest level (index 0) to full resolution
        self.transitions_up = nn.ModuleList()
        self.up_blocks = nn.ModuleList()
        self.up_attention = nn.ModuleList()
        new = bottom * rate
        for j, layers in enumerate(reversed(down)):
            self.transitions_up.append(up_type(new, new, 3, stride=2, padding=1, output_padding=1))
            c_in = new + skip_channels[-1 - j]
            self.up_blocks.append(dense(c_in, layers))
            new = layers * rate
            last = j == len(down) - 1
            self.up_attention.append(attend(c_in + new if last else new))
        self.head = conv(c_in + new, num_classes, 1)

    def _attention_slots(self) -> list[tuple[str, nn.Module]]:
        return [
            *((f"encoder.{i}", m) for i, m in enumerate(self.down_attention)),
            ("bottleneck", self.bottleneck_attention),
            *((f"decoder.{j}", m) for j, m in enumerate(self.up_attention)),
        ]

    def _forward(self, x: Tensor) -> Tensor:
        x = self.stem(x)
        skips = []
        for block, attention, down in zip(
            self.down_blocks, self.down_attention, self.transitions_down, strict=True
        ):
            x = attention(block(x)[0])
            skips.append(x)
            x = down(x)
        new = self.bottleneck_attention(self.bottleneck(x)[1])
        last = len(self.up_blocks) - 1
        for j, (up, block, attention, skip) in enumerate(
            zip(
                self.transitions_up, self.up_blocks, self.up_attention, reversed(skips), strict=True
            )
        ):
            full, new = block(torch.cat([up(new), skip], dim=1))
            new = attention(full if j == last else new)
        return self.head(new)
