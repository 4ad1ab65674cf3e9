"""Bottleneck attention module: ``bam``.

Park, Woo, Lee, Kweon, "BAM: Bottleneck Attention Module", BMVC 2018,
https://arxiv.org/abs/1807.06514; authors' code https://github.com/Jongchan/attention-module.

Math: two parallel branches, then a residual gate ``out = x * (1 + sigmoid(M))``:

- channel branch ``M_c = W2 relu(W1 GAP(x) + b1) + b2``: ``(N, C, 1, ..., 1)``;
- spatial branch ``M_s``: 1x1 conv ``C -> h``, two 3x3 convs of dilation 4 (``h -> h``), each
  conv followed by norm and ReLU, then a 1x1 conv ``h -> 1``: ``(N, 1, *spatial)``;
- ``M = M_c + M_s`` (``combine="sum"``, the paper) or ``M_c * M_s`` (``combine="product"``, the
  authors' code), broadcast to ``(N, C, *spatial)``.

Where we depart from the paper or the authors' code:

- ``combine``: the paper sums the branches (its ablation finds sum better than product and max);
  the code multiplies them. The default is the paper's sum; ``combine="product"`` gives the code.
- The channel branch has BatchNorm on the pooled vector in both; that fails in training at batch
  size 1, so the branch here is an SE-style MLP with biases and no norm.
- The spatial branch's BatchNorm is replaced by ``norm="group"``: a GroupNorm with one group over
  the ``h`` channels and all positions of each sample. It trains at batch size 1 even at a 1x1x1
  U-Net bottleneck (where BatchNorm raises) and keeps eval independent of the batch;
  ``norm="batch"`` gives the paper's layer. Convs followed by a norm have no bias.
- Dilation 4 with padding 4 keeps the shape at any size; on maps of 4 or fewer positions along an
  axis the off-centre taps only see zero padding, so the convs reduce to their centre taps there
  (nothing breaks; the spatial context is just the whole, tiny map).

Memory (training): the gate ``x * (1 + sigmoid(M_c + M_s))`` runs as a custom autograd function
(:func:`segattn.attention.lean.sigmoid_gate`) that keeps ``x``, ``M_c`` and ``M_s`` and recomputes
the full-size logits and sigmoid in backward. What stays above one copy of the input is the
spatial branch itself: three convs each keep their ``h``-channel input and three norms theirs,
``6 h / C`` copies of the input (1.5 at ``C = 16``, where ``min_channels`` makes ``h = C / 4``;
0.375 at ``C >= 64``), so BAM keeps ``1 + 6 h / C`` times its input (2.5x at ``C = 16``). Going
lower means recomputing the branch in backward (activation checkpointing).

Example:
    >>> import torch
    >>> bam = BottleneckAttention(channels=32, spatial_dims=3)
    >>> bam(torch.randn(2, 32, 5, 6, 7)).shape
    torch.Size([2, 32, 5, 6, 7])
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor, nn

from segattn.attention._gate import GatedAttention, as_channel_gate
from segattn.attention.lean import sigmoid_gate
from segattn.attention.registry import register
from segattn.layers import (
    ChannelMLP,
    check_positive_int,
    check_spatial_dims,
    conv_type,
    hidden_channels,
    norm_layer,
    reduce_dims,
)

__all__ = ["COMBINES", "BottleneckAttention"]

COMBINES = ("sum", "product")


@register("bam", paper="Park et al., BMVC 2018", url="https://arxiv.org/abs/1807.06514")
class BottleneckAttention(GatedAttention):
    """BAM: ``x * (1 + sigmoid(M_c (+ or *) M_s))`` for 1D, 2D and 3D inputs.

    Parameters, with ``h = max(C // reduction, min_channels)``, ``d = spatial_dims`` and the
    default ``norm="group"``: channel branch ``2*C*h + h + C``; spatial branch ``C*h + 2*h``
    (reduce conv, norm) ``+ 2*(h*h*3**d + 2*h)`` (dilated convs, norms) ``+ h + 1`` (final conv
    with bias). With ``norm="none"`` each of the three norms' ``2*h`` becomes an ``h`` conv bias.

    Args:
        channels: input channels ``C``.
        spatial_dims: 1, 2 or 3.
        reduction: ``r`` in ``h = C // r`` for both branches (16 in the paper).
        min_channels: lower bound of ``h``.
        dilation: dilation of the two 3x3 convs (4 in the paper).
        combine: ``"sum"`` (paper) or ``"product"`` (authors' code).
        norm: norm in the spatial branch, a ``segattn.layers.norm_layer`` name; ``"group"`` is
            one group per sample, ``"batch"`` the paper's BatchNorm.

    Raises:
        ValueError: non-positive ``channels``/``reduction``/``min_channels``/``dilation``,
            unknown ``combine`` or ``norm``, or bad ``spatial_dims``.

    Example:
        >>> import torch
        >>> bam = BottleneckAttention(channels=8)
        >>> x = torch.randn(2, 8, 33, 37)
        >>> bam.channel_attention(x).shape, bam.spatial_attention(x).shape
        (torch.Size([2, 8, 1, 1]), torch.Size([2, 1, 33, 37]))
        >>> bool(((bam.gate(x) > 1) & (bam.gate(x) < 2)).all())
        True
    """

    gate_range: ClassVar[tuple[float, float]] = (1.0, 2.0)
    spatial_after_channel = False

    def __init__(
        self,
        channels: int,
        spatial_dims: int = 2,
        reduction: int = 16,
        min_channels: int = 4,
        dilation: int = 4,
        combine: str = "sum",
        norm: str | None = "group",
    ) -> None:
        super().__init__()
        self.hidden = h = hidden_channels(channels, reduction, min_channels)
        self.spatial_dims = check_spatial_dims(spatial_dims)
        self.dilation = check_positive_int("dilation", dilation)
        if combine not in COMBINES:
            raise ValueError(f"combine must be one of {list(COMBINES)}, got {combine!r}")
        self.channels = channels
        self.combine = combine
        self.norm_name = "none" if norm is None else str(norm).lower()

        self.mlp = ChannelMLP(channels, h, act="relu")

        conv = conv_type(spatial_dims)
        bias = self.norm_name == "none"
        layers: list[nn.Module] = []
        for i in range(3):
            if i == 0:
                layers.append(conv(channels, h, kernel_size=1, bias=bias))
            else:
                layers.append(conv(h, h, 3, padding=dilation, dilation=dilation, bias=bias))
            layers += [norm_layer(self.norm_name, spatial_dims, h, groups=1), nn.ReLU()]
        layers.append(conv(h, 1, kernel_size=1))
        self.spatial = nn.Sequential(*layers)

    def channel_attention(self, x: Tensor) -> Tensor:
        """Channel branch ``M_c`` (logits, before the sigmoid).

        Args:
            x: ``(N, C, *spatial)``.

        Returns:
            ``(N, C, 1, ..., 1)``.
        """
        return as_channel_gate(self.mlp(x.mean(dim=reduce_dims(x.ndim))), x.ndim)

    def spatial_attention(self, x: Tensor) -> Tensor:
        """Spatial branch ``M_s`` (logits, before the sigmoid).

        Args:
            x: ``(N, C, *spatial)``.

        Returns:
            ``(N, 1, *spatial)``.
        """
        return self.spatial(x)

    def gate(self, x: Tensor) -> Tensor:
        """Residual gate ``1 + sigmoid(M_c + M_s)`` (or ``M_c * M_s`` with ``"product"``).

        Args:
            x: ``(N, C, *spatial)``.

        Returns:
            ``(N, C, *spatial)`` with values in (1, 2); ``forward(x) == x * gate(x)``.
        """
        m_c = self.channel_attention(x)
        m_s = self.spatial_attention(x)
        logits = m_c + m_s if self.combine == "sum" else m_c * m_s
        return 1 + torch.sigmoid(logits)

    def forward(self, x: Tensor) -> Tensor:
        """``x * gate(x)``: ``(N, C, *spatial) -> (N, C, *spatial)``, keeping the small
        ``M_c``, ``M_s`` for backward instead of the full-size logits, sigmoid and gate."""
        m_c = self.channel_attention(x)
        m_s = self.spatial_attention(x)
        return sigmoid_gate(x, m_c, m_s, product=self.combine == "product", offset=1.0)

    def extra_repr(self) -> str:
        return (
            f"channels={self.channels}, hidden={self.hidden}, dilation={self.dilation}, "
            f"combine={self.combine!r}, norm={self.norm_name!r}, spatial_dims={self.spatial_dims}"
        )

    def channel_gate(self, x: Tensor) -> Tensor:
        """The channel branch alone as a gate, ``sigmoid(M_c)``, for inspection.

        BAM applies ``1 + sigmoid(M_c + M_s)``, which does not factor into a channel and a
        spatial part; each branch's sigmoid shows what that branch alone would gate.

        Args:
            x: ``(N, C, *spatial)``.

        Returns:
            ``(N, C, 1, ..., 1)`` with values in (0, 1).
        """
        return torch.sigmoid(self.channel_attention(x))

    def spatial_gate(self, x: Tensor) -> Tensor:
        """The spatial branch alone as a gate, ``sigmoid(M_s)``, for inspection (see
        :meth:`channel_gate`).

        Args:
            x: ``(N, C, *spatial)``.

        Returns:
            ``(N, 1, *spatial)`` with values in (0, 1).
        """
        return torch.sigmoid(self.spatial_attention(x))
