"""Selective kernel: ``sk``.

Li, Wang, Hu, Yang, "Selective Kernel Networks", CVPR 2019, https://arxiv.org/abs/1903.06586;
authors' code https://github.com/implus/SKNet.

Math, with ``M`` branches (2 in the paper):

- split: ``U_m = relu(norm(conv3x3_m(x)))``, branch ``m`` dilated by ``m + 1`` (the paper's 5x5
  branch is the 3x3 with dilation 2), grouped convolutions;
- fuse: ``s = GAP(sum_m U_m)``: ``(N, C)``; ``z = relu(W s + b)``: ``(N, d)`` with
  ``d = max(C // reduction, min_channels)``;
- select: ``a = softmax over m of (A_m z + c_m)``: ``(N, M, C)``, so at every channel the branch
  weights are in (0, 1) and sum to 1; ``out = sum_m a_m * U_m``.

SK mixes branches instead of rescaling its input, so it has no ``gate``; ``branch_weights``
exposes ``a``. Inside a U-Net its branch convolutions add conv cost, which is inherent to SK.

Where we depart from the paper or the authors' code:

- ``z`` has BatchNorm in the paper; BatchNorm on a pooled vector fails in training at batch size
  1, so ``z`` gets a bias and no norm.
- The branch BatchNorm is replaced by ``norm="group"``: one GroupNorm group over all channels and
  positions of each sample, valid at batch 1 even at 1x1x1 and independent of the batch in eval;
  ``norm="batch"`` gives the paper's layer. Convs followed by a norm have no bias. (PyTorch's
  GroupNorm refuses a single value per group, so ``C = 1`` at one position and batch 1 needs
  ``norm="none"``; U-Net widths never get there.)
- Groups: the paper uses 32 groups; groups must divide ``C``, so the branches use
  ``gcd(C, groups)`` groups (32 for C = 64 or 96, depthwise for C <= 32 dividing 32, 1 for odd C).
- ``d = max(C // 16, 32)`` follows the paper (``L = 32``); for small ``C`` that makes ``d > C``,
  which is fine. ``min_channels`` is ``L``.

Memory (training): SK keeps about ``1 + 2 M`` copies of its input for backward (5x with two
branches): ``x`` for the branch convs, and per branch the conv output (for its norm) and the
activation (for the weighted sum). These are SK's branch feature maps, not gates, so the lean
gating products of :mod:`segattn.attention.lean` do not apply; going lower means recomputing the
branches in backward (activation checkpointing).

Example:
    >>> import torch
    >>> sk = SelectiveKernel(channels=16, spatial_dims=3)
    >>> x = torch.randn(2, 16, 5, 6, 7)
    >>> sk(x).shape, sk.branch_weights(x).shape
    (torch.Size([2, 16, 5, 6, 7]), torch.Size([2, 2, 16, 1, 1, 1]))
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import Tensor, nn

from segattn.attention.registry import register
from segattn.layers import (
    ChannelMLP,
    act_layer,
    check_positive_int,
    check_spatial_dims,
    conv_type,
    hidden_channels,
    norm_layer,
    reduce_dims,
)

__all__ = ["SelectiveKernel"]


@register("sk", paper="Li et al., CVPR 2019", url="https://arxiv.org/abs/1903.06586")
class SelectiveKernel(nn.Module):
    """Selective kernel unit: branches of growing dilation mixed by per-channel softmax weights.

    Parameters, with ``g = gcd(C, groups)``, ``d = max(C // reduction, min_channels)``,
    ``M = branches`` and ``n = spatial_dims``: ``M*(C*(C//g)*3**n + 2*C)`` (grouped branch convs
    without bias, norms) ``+ C*d + d`` (fuse) ``+ M*(d*C + C)`` (select). With ``norm="none"``
    each branch's ``2*C`` becomes a ``C`` conv bias.

    Args:
        channels: input and output channels ``C``.
        spatial_dims: 1, 2 or 3.
        branches: ``M``; branch ``m`` (from 0) is a 3x3 conv with dilation ``m + 1``.
        groups: requested conv groups (32 in the paper); ``gcd(C, groups)`` is used.
        reduction: ``r`` in ``d = C // r`` (16 in the paper).
        min_channels: ``L``, the lower bound of ``d`` (32 in the paper).
        norm: branch norm, a ``segattn.layers.norm_layer`` name; ``"group"`` is one group per
            sample, ``"batch"`` the paper's BatchNorm.
        act: activation of the branches and of ``z``.

    Raises:
        ValueError: non-positive ``channels``/``branches``/``groups``/``reduction``/
            ``min_channels``, unknown ``norm`` or ``act``, or bad ``spatial_dims``.

    Example:
        >>> import torch
        >>> sk = SelectiveKernel(channels=8)
        >>> a = sk.branch_weights(torch.randn(2, 8, 33, 37))
        >>> a.shape, bool(torch.allclose(a.sum(dim=1), torch.ones(2, 8, 1, 1)))
        (torch.Size([2, 2, 8, 1, 1]), True)
    """

    gate_range: ClassVar[tuple[float, float]] = (0.0, 1.0)
    gate_note: ClassVar[str] = "sum of branch maps; branch weights in (0,1) sum to 1 per channel"

    def __init__(
        self,
        channels: int,
        spatial_dims: int = 2,
        branches: int = 2,
        groups: int = 32,
        reduction: int = 16,
        min_channels: int = 32,
        norm: str | None = "group",
        act: str = "relu",
    ) -> None:
        super().__init__()
        self.hidden = hidden_channels(channels, reduction, min_channels)
        self.spatial_dims = check_spatial_dims(spatial_dims)
        self.num_branches = check_positive_int("branches", branches)
        self.groups = math.gcd(channels, check_positive_int("groups", groups))
        self.channels = channels
        self.norm_name = "none" if norm is None else str(norm).lower()
        conv = conv_type(spatial_dims)
        bias = self.norm_name == "none"
        self.branches = nn.ModuleList(
            nn.Sequential(
                conv(
                    channels,
                    channels,
                    3,
                    padding=m + 1,
                    dilation=m + 1,
                    groups=self.groups,
                    bias=bias,
                ),
                norm_layer(self.norm_name, spatial_dims, channels, groups=1),
                act_layer(act),
            )
            for m in range(branches)
        )
        # fc1 is the paper's fuse (C -> d), fc2 its select (d -> M*C, all branches at once)
        self.mlp = ChannelMLP(channels, self.hidden, branches * channels, act=act)

    def _split_and_weigh(self, x: Tensor) -> tuple[list[Tensor], Tensor]:
        """Branch maps ``U_m`` and their weights ``(N, M, C, 1, ..., 1)``."""
        n, c = x.shape[:2]
        maps = [branch(x) for branch in self.branches]
        pooled = torch.stack([u.mean(dim=reduce_dims(x.ndim)) for u in maps]).sum(dim=0)
        logits = self.mlp(pooled).view(n, self.num_branches, c)
        weights = torch.softmax(logits, dim=1)
        return maps, weights.view(n, self.num_branches, c, *[1] * (x.ndim - 2))

    def branch_weights(self, x: Tensor) -> Tensor:
        """Per-channel branch weights ``a`` (softmax over the branch axis).

        Args:
            x: ``(N, C, *spatial)``.

        Returns:
            ``(N, M, C, 1, ..., 1)`` with values in (0, 1) summing to 1 over axis 1.
        """
        return self._split_and_weigh(x)[1]

    def branch_maps(self, x: Tensor) -> list[Tensor]:
        """The ``M`` branch outputs ``U_m``, each ``(N, C, *spatial)``."""
        return [branch(x) for branch in self.branches]

    def forward(self, x: Tensor) -> Tensor:
        """Mix the branches: ``x: (N, C, *spatial) -> (N, C, *spatial)``."""
        maps, weights = self._split_and_weigh(x)
        out = weights[:, 0] * maps[0]
        for m in range(1, self.num_branches):
            out = out + weights[:, m] * maps[m]
        return out

    def extra_repr(self) -> str:
        return (
            f"channels={self.channels}, branches={self.num_branches}, groups={self.groups}, "
            f"hidden={self.hidden}, norm={self.norm_name!r}, spatial_dims={self.spatial_dims}"
        )
