"""Cost and range of every registered attention module, measured on the real modules.

``segattn modules`` prints :func:`module_table`; nothing in it is typed in by hand: parameters are
counted on an instance, multiply-adds are counted by running a forward pass under
``torch.utils.flop_counter.FlopCounterMode`` (which counts matrix products and convolutions,
``flops = 2 * MACs``), and the gate range comes from each class's ``gate_range``.

Only convolutions and matrix products are counted: pooling, normalisation, activations and the
final ``x * gate`` are elementwise and cost about ``C * |S|`` operations each for every module.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

from segattn.attention.registry import available, create, info

__all__ = ["ModuleStats", "format_module_table", "module_stats", "module_table"]


@dataclass(frozen=True)
class ModuleStats:
    """Measured cost of one registered module at one channel width.

    Attributes:
        name: registry name.
        paper: short citation.
        url: link to the paper.
        channels: ``C`` the module was built with.
        params_2d: parameters of the 2D module.
        macs_2d: multiply-adds of one forward pass on ``(1, C, *size_2d)``.
        params_3d: parameters of the 3D module.
        macs_3d: multiply-adds of one forward pass on ``(1, C, *size_3d)``.
        gate: gate range (or the note of a module that is not a plain gate).
        size_2d: spatial size of the 2D measurement.
        size_3d: spatial size of the 3D measurement.
    """

    name: str
    paper: str
    url: str
    channels: int
    params_2d: int
    macs_2d: int
    params_3d: int
    macs_3d: int
    gate: str
    size_2d: tuple[int, ...] = (64, 64)
    size_3d: tuple[int, ...] = (32, 32, 32)


def _build(name: str, channels: int, size: Sequence[int]) -> torch.nn.Module:
    return create(name, channels, len(size)).eval()


def _count(module: torch.nn.Module, channels: int, size: Sequence[int]) -> tuple[int, int]:
    params = sum(p.numel() for p in module.parameters())
    x = torch.randn(1, channels, *size)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        module(x)
    return params, counter.get_total_flops() // 2


def _gate_text(module: torch.nn.Module) -> str:
    """``gate_range`` (and ``gate_note``) of the built module: options may change them."""
    note = getattr(module, "gate_note", "")
    low, high = getattr(module, "gate_range", (0.0, 1.0))
    text = f"({low:g}, {high:g})"
    return f"{text} {note}".strip() if note else text


def module_stats(
    name: str,
    channels: int = 64,
    size_2d: Sequence[int] = (64, 64),
    size_3d: Sequence[int] = (32, 32, 32),
) -> ModuleStats:
    """Measure one registered module with its default options.

    Args:
        name: registry name.
        channels: width ``C``; modules with a ``channel_multiple`` need a multiple of it.
        size_2d: spatial size of the 2D input.
        size_3d: spatial size of the 3D input.

    Raises:
        ValueError: unknown name or a width the module cannot take.
    """
    entry = info(name)
    module_2d = _build(name, channels, size_2d)
    params_2d, macs_2d = _count(module_2d, channels, size_2d)
    params_3d, macs_3d = _count(_build(name, channels, size_3d), channels, size_3d)
    return ModuleStats(
        name=entry.name,
        paper=entry.paper,
        url=entry.url,
        channels=channels,
        params_2d=params_2d,
        macs_2d=macs_2d,
        params_3d=params_3d,
        macs_3d=macs_3d,
        gate=_gate_text(module_2d),
        size_2d=tuple(size_2d),
        size_3d=tuple(size_3d),
    )


def module_table(
    channels: int = 64,
    size_2d: Sequence[int] = (64, 64),
    size_3d: Sequence[int] = (32, 32, 32),
) -> list[ModuleStats]:
    """:func:`module_stats` of every registered module, in registry order."""
    return [module_stats(n, channels, size_2d, size_3d) for n in available()]


def _human(n: int) -> str:
    for unit, scale in (("G", 10**9), ("M", 10**6), ("k", 10**3)):
        if n >= scale:
            return f"{n / scale:.3g}{unit}"
    return str(n)


def format_module_table(rows: Sequence[ModuleStats], exact: bool = False) -> str:
    """A plain-text (Markdown-compatible) table of ``rows``.

    Args:
        rows: measured modules, e.g. from :func:`module_table`.
        exact: print exact integers instead of k/M/G abbreviations.
    """
    if not rows:
        return ""
    num = str if exact else _human
    first = rows[0]
    s2 = "x".join(str(s) for s in first.size_2d)
    s3 = "x".join(str(s) for s in first.size_3d)
    header = [
        "name",
        "paper",
        "params 2D",
        f"MACs 2D {s2}",
        "params 3D",
        f"MACs 3D {s3}",
        "gate range",
    ]
    body = [
        [
            r.name,
            r.paper,
            num(r.params_2d),
            num(r.macs_2d),
            num(r.params_3d),
            num(r.macs_3d),
            r.gate,
        ]
        for r in rows
    ]
    widths = [max(len(str(row[i])) for row in [header, *body]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(header), rule, *(line(row) for row in body)])
