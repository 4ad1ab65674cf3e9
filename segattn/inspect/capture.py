"""The attention lens: capture the gates every attention module applies in one forward pass.

Roy, Navab, Wachinger, "Recalibrating Fully Convolutional Networks with Spatial and Channel
'Squeeze & Excitation' Blocks", IEEE TMI 2019, https://arxiv.org/abs/1808.08127, draw sSE maps
and per-structure cSE activations; this module gives those pictures for every registered
mechanism and every network with ``attention_modules()``.

Forward hooks on the modules of ``net.attention_modules()`` read each module's input ``x`` and
ask the module for its gates through the contract of :mod:`segattn.attention._gate`:

- ``channel``: ``channel_gate(x)`` as ``(N, C)`` (se, cse, rcan, eca, gct, srm, fca, gsop, soca,
  dia, and the channel parts of scse, cbam and bam);
- ``spatial``: ``spatial_gate(x)`` (``(N, 1, *spatial)``; CBAM's on ``x * channel_gate(x)``, the
  order it applies them), or, for modules with only ``gate(x)``, that gate: ``(N, 1, *spatial)``
  for sse, ``(N, C, *spatial)`` for coord, pe and bilinear;
- both for scse, cbam and bam. BAM's applied gate ``1 + sigmoid(M_c + M_s)`` does not factor,
  so its records hold each branch's ``sigmoid`` alone.
- neither (both ``None``) for ``sk`` and ``enc``: SK mixes two convolution branches with softmax
  weights (``branch_weights``) instead of rescaling its input, and EncNet's output
  ``relu(x * (1 + gamma))`` is not its input times a factor (``channel_factor`` gives
  ``1 + gamma``).

The gates are computed a second time from the hooked input, so the modules' math and the
network's output are untouched; the exception is ``dia`` with a cell shared between blocks,
whose gate is read from the cell's state after the module's own step (a second step would
advance it). Hooks are removed when the call ends, also on error; nothing is kept on the
network.

Example:
    >>> import torch
    >>> from segattn.nets import UNet
    >>> net = UNet(2, 1, 3, features=(8, 16), attention="scse")
    >>> records = capture_attention(net, torch.randn(2, 1, 32, 36))
    >>> [r.block for r in records] == list(net.attention_modules())
    True
    >>> records[0].name, tuple(records[0].spatial.shape), tuple(records[0].channel.shape)
    ('scse', (2, 1, 32, 36), (2, 8))
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from segattn.attention._gate import ChannelGated, Gated, SpatialGated
from segattn.attention.dia import DenseImplicitAttention
from segattn.attention.registry import available, info

__all__ = [
    "AttentionRecord",
    "attention_hooks",
    "capture_attention",
    "module_gates",
    "registry_name",
    "to_image_grid",
]


@dataclass(frozen=True)
class AttentionRecord:
    """The gates one attention module applied in one forward pass.

    Attributes:
        block: the module's key in ``net.attention_modules()``.
        name: its attention registry name (``"scse"``).
        spatial: ``(N, 1, *block_spatial)`` or ``(N, C, *block_spatial)`` at the block's own
            resolution (of the padded input for networks that pad, such as the U-Net;
            :func:`to_image_grid` crops), or None.
        channel: ``(N, C)``, or None.
    """

    block: str
    name: str
    spatial: Tensor | None
    channel: Tensor | None


def module_gates(module: nn.Module, x: Tensor) -> tuple[Tensor | None, Tensor | None]:
    """The ``(channel, spatial)`` gates ``module`` computes for its input ``x``.

    Call it on the input the module saw; for a shared ``dia`` cell call it after the module ran
    (the gate is the cell's state).

    Args:
        module: an attention module.
        x: its input ``(N, C, *spatial)``.

    Returns:
        ``channel`` ``(N, C)`` or None, ``spatial`` ``(N, 1|C, *spatial)`` or None.
    """
    n, c = x.shape[:2]
    if isinstance(module, DenseImplicitAttention) and module.is_shared:
        state = module.cell.state
        return (None if state is None else state[0].reshape(n, c)), None
    channel = spatial = None
    channel_factor = None
    if isinstance(module, ChannelGated):
        channel_factor = module.channel_gate(x)
        channel = channel_factor.reshape(n, c)
    if isinstance(module, SpatialGated):
        seen = x
        if module.spatial_after_channel and channel_factor is not None:
            seen = x * channel_factor
        spatial = module.spatial_gate(seen)
    elif isinstance(module, Gated) and channel is None:
        spatial = module.gate(x).expand(n, -1, *x.shape[2:])
    return channel, spatial


def registry_name(module: nn.Module, hint: Any = None) -> str:
    """The attention registry name of ``module``'s class (``hint`` picks among aliases).

    Classes registered under several names (``se``, ``cse`` and ``rcan`` are one class) give
    ``hint`` when it is one of them (a network's ``config["attention"]``), else the first.
    Unregistered classes give the class name.
    """
    names = [name for name in available() if info(name).cls is type(module)]
    if isinstance(hint, str) and hint.lower() in names:
        return hint.lower()
    return names[0] if names else type(module).__name__


def _select(net: nn.Module, blocks: Sequence[str] | None) -> dict[str, nn.Module]:
    getter = getattr(net, "attention_modules", None)
    if getter is None:
        raise ValueError(f"{type(net).__name__} has no attention_modules()")
    modules: dict[str, nn.Module] = dict(getter())
    if blocks is None:
        return modules
    unknown = [b for b in blocks if b not in modules]
    if unknown:
        raise ValueError(f"unknown block(s) {unknown}; this network has {list(modules)}")
    return {name: m for name, m in modules.items() if name in set(blocks)}


@contextlib.contextmanager
def attention_hooks(
    net: nn.Module, blocks: Sequence[str] | None = None
) -> Iterator[list[AttentionRecord]]:
    """Record the gates of every forward pass run inside the ``with`` block.

    The list receives one record per selected module and forward pass, in call order; gates are
    detached. The hooks are removed on exit, also on error. Modes are not touched (see
    :func:`capture_attention`).

    Args:
        net: a network with ``attention_modules()``.
        blocks: keys of ``attention_modules()`` to record; None records all.

    Raises:
        ValueError: no ``attention_modules()``, or an unknown block.

    Example::

        with attention_hooks(net) as records:
            for batch in slices:
                net(batch)
    """
    modules = _select(net, blocks)
    config = getattr(net, "config", None)
    hint = config.get("attention") if isinstance(config, dict) else None
    records: list[AttentionRecord] = []
    handles = []

    def make_hook(block: str, name: str) -> Any:
        def hook(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
            with torch.no_grad():
                channel, spatial = module_gates(module, args[0])
            records.append(
                AttentionRecord(
                    block,
                    name,
                    None if spatial is None else spatial.detach(),
                    None if channel is None else channel.detach(),
                )
            )

        return hook

    try:
        for block, module in modules.items():
            name = registry_name(module, hint)
            handles.append(module.register_forward_hook(make_hook(block, name)))
        yield records
    finally:
        for handle in handles:
            handle.remove()


def capture_attention(
    net: nn.Module, image: Tensor, blocks: Sequence[str] | None = None
) -> list[AttentionRecord]:
    """Run ``net`` once on ``image`` in eval mode and return every attention module's gates.

    Each submodule's train/eval mode is restored afterwards; no gradient is recorded.

    Args:
        net: a network with ``attention_modules()`` (every ``segattn.nets`` network).
        image: ``(N, in_channels, *spatial)``.
        blocks: keys of ``attention_modules()`` to capture; None captures all.

    Returns:
        one :class:`AttentionRecord` per module, in forward order.

    Raises:
        ValueError: no ``attention_modules()``, or an unknown block.
    """
    modes = [(m, m.training) for m in net.modules()]
    net.eval()
    try:
        with attention_hooks(net, blocks) as records, torch.no_grad():
            net(image)
    finally:
        for module, training in modes:
            module.training = training
    return list(records)


def to_image_grid(gate: Tensor, size: Sequence[int]) -> Tensor:
    """Upsample a spatial gate from its block's resolution to the image grid.

    Blocks of encoder-decoder networks see the (far-end padded) image downsampled by a power of
    two; the factor per axis is the power of two nearest ``size / gate_size``. The gate is
    interpolated (linear, ``align_corners=False``: cell centres of a stride-``f`` pooling) by
    that factor, then cropped, or replicate-padded, to ``size`` at the far end.

    Args:
        gate: ``(N, K, *block_spatial)``.
        size: the image's spatial size.

    Returns:
        ``(N, K, *size)``.

    Raises:
        ValueError: ``size`` does not have one entry per spatial axis.

    Example:
        >>> to_image_grid(torch.rand(2, 1, 5, 5), (33, 37)).shape
        torch.Size([2, 1, 33, 37])
    """
    spatial = tuple(gate.shape[2:])
    if len(size) != len(spatial):
        raise ValueError(f"size {tuple(size)} does not match the gate's spatial axes {spatial}")
    factors = [2.0 ** round(math.log2(max(s / g, 1e-9))) for s, g in zip(size, spatial)]
    out = gate.float()
    if any(f != 1.0 for f in factors):
        mode = ("linear", "bilinear", "trilinear")[len(spatial) - 1]
        out = F.interpolate(out, scale_factor=factors, mode=mode, align_corners=False)
    out = out[(slice(None), slice(None)) + tuple(slice(0, s) for s in size)]
    pad: list[int] = []
    for have, want in zip(reversed(out.shape[2:]), reversed(tuple(size))):
        pad += [0, want - have]
    if any(pad):
        out = F.pad(out, pad, mode="replicate")
    return out
