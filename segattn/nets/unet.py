"""U-Net with a pluggable attention module after every conv block, 1D/2D/3D.

Ronneberger, Fischer, Brox, "U-Net: Convolutional Networks for Biomedical Image Segmentation",
MICCAI 2015, https://arxiv.org/abs/1505.04597. Attention placement follows Roy, Navab, Wachinger,
MICCAI 2018, https://arxiv.org/abs/1803.02579: one module after every encoder, bottleneck and
decoder block, before pooling/upsampling; the recalibrated tensor is also the skip connection.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from segattn.attention import AttentionSpec, create, info
from segattn.layers import (
    check_positive_int,
    check_spatial_dims,
    conv_transpose_type,
    conv_type,
    max_pool_type,
)
from segattn.nets import handoff
from segattn.nets.base import crop_to, pad_to_multiple
from segattn.nets.blocks import ConvBlock
from segattn.nets.registry import register

__all__ = ["ATTENTION_POSITIONS", "UNet"]

ATTENTION_POSITIONS = ("encoder", "bottleneck", "decoder")
#: ``UNet(padding=...)``: odd sizes padded before each pooling, or the input padded once
PADDINGS = ("level", "input")


@register("unet", paper="Ronneberger et al., MICCAI 2015", url="https://arxiv.org/abs/1505.04597")
class UNet(nn.Module):
    """U-Net for ``spatial_dims`` 1, 2 or 3 with attention after every conv block.

    Level ``i`` of the encoder is a conv block (two ``conv3x3-norm-act`` layers) of width
    ``features[i]`` followed by an attention module and a 2x max pool; the last level is the
    bottleneck. Each decoder level upsamples with a stride-2 transposed convolution, concatenates
    the skip, and runs a conv block and an attention module. A 1x1 convolution gives the logits.
    With ``L = len(features)`` levels there are ``2*L - 1`` attention modules.

    Inputs of any size work, at their own size: before a pooling, an axis of odd size is padded
    by one voxel at its far end (replicate, so the max pool equals ``ceil_mode`` pooling), and
    each upsampled tensor is cropped to its skip's size. Level ``k`` is ``ceil(s / 2**k)`` voxels
    along an axis of ``s``; sizes divisible by ``size_divisor = 2**(L - 1)`` need no padding.
    (Padding the input to a multiple of ``2**(L - 1)`` instead would compute 9% more voxels at
    every level for an 80 x 88 slice, as 80 x 96.)

    Shared attention state: an attention class may define a classmethod
    ``shared_group(channels, spatial_dims, **options) -> nn.Module`` and accept ``shared=`` in
    ``__init__`` (e.g. ``dia``, whose modules of one stage share one recurrent cell). The U-Net
    then builds one such object per level -- shared by the encoder and decoder modules of that
    width; the bottleneck has its own -- passes it to those modules, and calls its
    ``reset_state()`` at the start and the end of every forward pass, so no state crosses batches
    and none is left holding the autograd graph. Shared parameters appear once in
    ``parameters()``; in ``state_dict()`` they appear under every module that uses them.

    Args:
        spatial_dims: 1, 2 or 3.
        in_channels: input channels (image modalities).
        num_classes: output channels (logits, background included).
        features: widths of every level, the last being the bottleneck.
        attention: a name from ``segattn.attention.available()``, ``None``/``"none"``, an
            ``nn.Module`` subclass or a ``functools.partial`` (see ``segattn.attention.create``).
        attention_kwargs: options passed to every attention module.
        attention_positions: where to put attention, a subset of ``("encoder", "bottleneck",
            "decoder")``; elsewhere ``nn.Identity``.
        norm: ``"instance"``, ``"batch"``, ``"group"`` or ``"none"``.
        act: activation name from ``segattn.layers.act_layer``.
        dropout: dropout probability inside every conv block (0 disables it).
        deep_supervision: add 1x1 heads on the lower-resolution decoder levels; in training mode
            ``forward`` then returns a list of logits, full resolution first.
        padding: ``"level"`` (default): odd sizes padded by one voxel before each pooling, as
            above; ``"input"``: the input padded to a multiple of ``size_divisor`` and the logits
            cropped back, as earlier U-Nets did (checkpoints whose network options lack
            ``padding`` load with it, so they predict as they were trained).

    Raises:
        ValueError: bad widths, counts, positions, norm, activation, dropout or attention name.
        TypeError: ``attention_kwargs`` is not a mapping.

    Example:
        >>> import torch
        >>> net = UNet(3, in_channels=1, num_classes=4, features=(8, 16, 32), attention="scse")
        >>> net(torch.randn(2, 1, 17, 19, 21)).shape
        torch.Size([2, 4, 17, 19, 21])
        >>> len(net.attention_modules())
        5
        >>> rebuilt = UNet(**net.config)
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        num_classes: int,
        features: Sequence[int] = (32, 64, 128, 256),
        attention: AttentionSpec = None,
        attention_kwargs: Mapping[str, Any] | None = None,
        attention_positions: Sequence[str] = ATTENTION_POSITIONS,
        norm: str | None = "instance",
        act: str | None = "leakyrelu",
        dropout: float = 0.0,
        deep_supervision: bool = False,
        padding: str = "level",
    ) -> None:
        super().__init__()
        check_spatial_dims(spatial_dims)
        check_positive_int("in_channels", in_channels)
        check_positive_int("num_classes", num_classes)
        if isinstance(features, (str, bytes)) or not isinstance(features, Sequence) or not features:
            raise ValueError(f"features must be a non-empty sequence of widths, got {features!r}")
        widths = [check_positive_int("every width in features", f) for f in features]
        if attention_kwargs is None:
            attention_kwargs = {}
        if not isinstance(attention_kwargs, Mapping):
            raise TypeError(f"attention_kwargs must be a mapping, got {attention_kwargs!r}")
        if isinstance(attention_positions, str):
            attention_positions = (attention_positions,)
        bad = [p for p in attention_positions if p not in ATTENTION_POSITIONS]
        if bad:
            raise ValueError(
                f"attention_positions must be a subset of {list(ATTENTION_POSITIONS)}, got {bad}"
            )
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)):
            raise ValueError(f"dropout must be a number in [0, 1), got {dropout!r}")

        self.spatial_dims = spatial_dims
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.deep_supervision = bool(deep_supervision)
        self.size_divisor = 2 ** (len(widths) - 1)
        if padding not in PADDINGS:
            raise ValueError(f"padding must be one of {PADDINGS}, got {padding!r}")
        self._padding = padding
        self._config: dict[str, Any] = {
            "spatial_dims": spatial_dims,
            "in_channels": in_channels,
            "num_classes": num_classes,
            "features": list(widths),
            "attention": attention,
            "attention_kwargs": dict(attention_kwargs),
            "attention_positions": list(attention_positions),
            "norm": norm,
            "act": act,
            "dropout": float(dropout),
            "deep_supervision": self.deep_supervision,
            "padding": padding,
        }

        def block(c_in: int, c_out: int) -> ConvBlock:
            return ConvBlock(spatial_dims, c_in, c_out, norm=norm, act=act, dropout=dropout)

        shared_factory = _shared_group_factory(attention, spatial_dims, attention_kwargs)
        # level index -> the object shared by that level's attention modules (see the docstring);
        # a plain dict, not a ModuleDict: the attention modules using it register it already
        self._shared_groups: dict[int, Any] = {}

        def attend(position: str, width: int, level: int) -> nn.Module:
            if position not in attention_positions:
                return nn.Identity()
            if shared_factory is None:
                return create(attention, width, spatial_dims, **attention_kwargs)
            if level not in self._shared_groups:
                self._shared_groups[level] = shared_factory(width)
            shared = self._shared_groups[level]
            return create(attention, width, spatial_dims, **attention_kwargs, shared=shared)

        if attention is not None and not attention_positions:
            create(attention, widths[0], spatial_dims, **attention_kwargs)  # validate only

        skip_widths = widths[:-1]
        self.encoder = nn.ModuleList()
        self.encoder_attention = nn.ModuleList()
        c_in = in_channels
        for level, width in enumerate(skip_widths):
            self.encoder.append(block(c_in, width))
            self.encoder_attention.append(attend("encoder", width, level))
            c_in = width
        self.pool = max_pool_type(spatial_dims)(kernel_size=2, stride=2)
        self.bottleneck = block(c_in, widths[-1])
        self.bottleneck_attention = attend("bottleneck", widths[-1], len(skip_widths))

        # Decoder lists run from the deepest level (index 0) to full resolution (index -1).
        self.upsample = nn.ModuleList()
        self.decoder = nn.ModuleList()
        self.decoder_attention = nn.ModuleList()
        up_type = conv_transpose_type(spatial_dims)
        c_in = widths[-1]
        for level in reversed(range(len(skip_widths))):
            width = skip_widths[level]
            self.upsample.append(up_type(c_in, width, kernel_size=2, stride=2))
            self.decoder.append(block(2 * width, width))
            self.decoder_attention.append(attend("decoder", width, level))
            c_in = width

        head_type = conv_type(spatial_dims)
        self.head = head_type(widths[0], num_classes, kernel_size=1)
        # aux_heads[j] reads decoder level j + 1 (resolution 1 / 2**(j + 1)).
        self.aux_heads = nn.ModuleList()
        if self.deep_supervision:
            for width in skip_widths[1:]:
                self.aux_heads.append(head_type(width, num_classes, kernel_size=1))

    @property
    def config(self) -> dict[str, Any]:
        """The constructor arguments; ``UNet(**net.config)`` rebuilds the same architecture.

        JSON-serialisable as long as ``attention`` was given by name (or ``None``).
        """
        return copy.deepcopy(self._config)

    @property
    def padding(self) -> str:
        """``"level"`` or ``"input"`` (see the class docstring); settable, e.g. to run a U-Net
        trained with the other scheme."""
        return self._padding

    @padding.setter
    def padding(self, value: str) -> None:
        if value not in PADDINGS:
            raise ValueError(f"padding must be one of {PADDINGS}, got {value!r}")
        self._padding = value
        self._config["padding"] = value

    def attention_modules(self) -> dict[str, nn.Module]:
        """Attention modules in forward order, keyed ``encoder.<i>`` (``i = 0`` at full
        resolution), ``bottleneck``, ``decoder.<j>`` (``j = 0`` the deepest, right after the
        bottleneck), as for every network of ``segattn.nets``.

        Positions disabled by ``attention_positions`` (and ``attention=None``) hold
        ``nn.Identity`` and are left out. (The submodules themselves keep their names
        ``encoder_attention.<i>``, ``bottleneck_attention``, ``decoder_attention.<j>``, so
        checkpoints of earlier releases load.)
        """
        named = [(f"encoder.{i}", m) for i, m in enumerate(self.encoder_attention)]
        named.append(("bottleneck", self.bottleneck_attention))
        named += [(f"decoder.{i}", m) for i, m in enumerate(self.decoder_attention)]
        return {name: m for name, m in named if not isinstance(m, nn.Identity)}

    def forward(self, x: Tensor) -> Tensor | list[Tensor]:
        """Segment ``x``.

        Args:
            x: ``(N, in_channels, *spatial)``, any spatial size.

        Returns:
            Logits ``(N, num_classes, *spatial)``; with ``deep_supervision`` in training mode a
            list whose first item is those logits, followed by logits at 1/2, 1/4, ...
            resolution (sizes ``ceil(s / 2**k)``).
        """
        if x.ndim != self.spatial_dims + 2 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"expected input (N, {self.in_channels}, <{self.spatial_dims} spatial axes>), "
                f"got {tuple(x.shape)}"
            )
        self.reset_attention_state()
        try:
            return self._forward(x)
        finally:
            self.reset_attention_state()

    def reset_attention_state(self) -> None:
        """Reset the state of shared attention objects (done by ``forward`` itself)."""
        for group in self._shared_groups.values():
            group.reset_state()

    def _forward(self, x: Tensor) -> Tensor | list[Tensor]:
        spatial = tuple(x.shape[2:])
        if self.padding == "input":  # then the per-level padding and cropping below do nothing
            x = pad_to_multiple(x, self.size_divisor)

        # handoff: the layers after an attention module (pool, upsampling, heads) keep the
        # module's recipe (its input and gates) for backward instead of its output
        skips = []
        for block, attention in zip(self.encoder, self.encoder_attention, strict=True):
            x, _ = handoff.attend(attention, block(x))
            skips.append(x)
            x = handoff.pool(self.pool, pad_to_multiple(x, 2))
        x, recipe = handoff.attend(self.bottleneck_attention, self.bottleneck(x))

        decoded = []
        for up, block, attention, skip in zip(
            self.upsample, self.decoder, self.decoder_attention, reversed(skips), strict=True
        ):
            upsampled = crop_to(handoff.feed(up, x, recipe), tuple(skip.shape[2:]))
            x = torch.cat([upsampled, skip], dim=1)
            x, recipe = handoff.attend(attention, block(x))
            decoded.append((x, recipe))

        logits = crop_to(handoff.feed(self.head, x, recipe), spatial, 1)
        if not (self.deep_supervision and self.training):
            return logits
        outputs = [logits]
        for level, head in enumerate(self.aux_heads, start=1):
            outputs.append(crop_to(handoff.feed(head, *decoded[-1 - level]), spatial, 2**level))
        return outputs


def _shared_group_factory(
    attention: AttentionSpec, spatial_dims: int, attention_kwargs: Mapping[str, Any]
) -> Callable[[int], nn.Module] | None:
    """``width -> shared object`` when the attention class has a ``shared_group`` hook, else None.

    The hook receives the same options as the modules (registry defaults, a partial's keywords,
    then ``attention_kwargs``).
    """
    cls: Any = attention
    options: dict[str, Any] = {}
    if isinstance(attention, str):
        if attention.strip().lower() in ("", "none"):
            return None
        entry = info(attention)
        cls, options = entry.cls, dict(entry.defaults)
    elif isinstance(attention, functools.partial):
        cls, options = attention.func, dict(attention.keywords)
    hook = getattr(cls, "shared_group", None)
    if not callable(hook):
        return None
    options.update(attention_kwargs)

    def make(width: int) -> nn.Module:
        group = hook(width, spatial_dims, **options)
        if not callable(getattr(group, "reset_state", None)):
            raise TypeError(f"{cls!r}.shared_group() returned an object without reset_state()")
        return group

    return make
