"""Bounded-memory prediction of one preprocessed scan by one or several models.

The models that share a preprocessing (one *group*) run on the same model grid. The group picks
one axis to stream along: the slicing axis shared by most of its 2D models, else the axis with the
smallest sliding-window buffer of its 3D models. For each slab of rows, the models' class
probabilities are weighted and summed (:func:`segattn.inference.slabs.merge_slabs`), resampled
back onto the oriented grid if the checkpoint resamples (:func:`segattn.inference.regrid.
resample_slabs`), and handed to the caller as ``(box, probabilities)`` on the oriented grid.

Memory, with ``K`` classes and ``V`` voxels (budget = ``max_memory``):

- 3D sliding window: ``(K + 1) * roi[axis] * (cross-section)`` float32; if that exceeds the
  budget the cross-section is split into column blocks (windows straddling two blocks run twice).
- 2D models slicing along the streamed axis: one batch of slices.
- 2D models slicing along another axis (mixed views, e.g. three-view ensembles): their weighted
  probabilities are summed into one ``(K, V)`` accumulator first, float32 if it fits the budget,
  else 16-bit fixed point (2 bytes per class and voxel; ~2e-5 absolute error per model). This
  is the one part that is not bounded by slabs.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from segattn.inference.checkpoint import CheckpointInfo
from segattn.inference.regrid import Box, Geometry, resample_slabs, shifted
from segattn.inference.slabs import (
    Slab,
    WindowGrid,
    best_axis,
    merge_slabs,
    slice_slabs,
    sliding_window_slabs,
    softmax_slabs,
    tensor_slabs,
)

log = logging.getLogger(__name__)

GB = 1024**3


@dataclass(eq=False)
class Member:
    """One model of an ensemble: its checkpoint, its logits function and its weight."""

    info: CheckpointInfo
    net: Callable[[Tensor], Tensor]
    weight: float


@dataclass
class Settings:
    """Run options: windows/slices per forward pass, window overlap, memory budget in bytes."""

    sw_batch_size: int = 4
    overlap: float = 0.5
    max_memory: int = GB


def group_slabs(
    members: Sequence[Member], image: Tensor, geometry: Geometry, settings: Settings
) -> Iterator[tuple[Box, Tensor]]:
    """Weighted class probabilities of ``members`` on the oriented grid, box by box.

    Args:
        members: models sharing one preprocessing (same model grid), weights already set.
        image: ``(C, *model grid)`` preprocessed image.
        geometry: the scan's grids (:meth:`Geometry.of`).
        settings: run options.

    Yields:
        ``(box, probabilities)``: ``box`` is ``[lo, hi)`` per oriented axis, ``probabilities`` a
        float32 ``(K, *box sizes)`` tensor; the boxes tile the oriented grid.
    """
    size = tuple(int(s) for s in image.shape[1:])
    classes = members[0].info.num_classes
    axis = stream_axis(members, size)
    on = [m for m in members if m.info.mode == "3d" or m.info.slice_axis == axis]
    off = [m for m in members if all(m is not o for o in on)]
    extra = _off_axis_sum(off, image, classes, settings) if off else None
    col_axis, blocks = _plan_blocks(on, extra is not None, geometry, axis, classes, settings)
    oriented = geometry.oriented_shape
    for o0, o1 in blocks:
        obox = tuple((o0, o1) if d == col_axis else (0, oriented[d]) for d in range(3))
        m0, m1 = (0, size[col_axis]) if len(blocks) == 1 else geometry.model_box(obox)[col_axis]
        columns = None if (m0, m1) == (0, size[col_axis]) else (m0, m1)
        sources = [
            softmax_slabs(_model_slabs(m, image, axis, settings, columns, col_axis)) for m in on
        ]
        weights = [m.weight for m in on]
        if extra is not None:
            part = extra.values
            if columns is not None:
                part = part.narrow(1 + col_axis, m0, m1 - m0)
            sources.append(tensor_slabs(part, axis=axis, rows=8))
            weights.append(extra.unit)
        merged = merge_slabs(sources, weights, axis=axis, size=size[axis])
        if geometry.resample is None:
            for row, probs in merged:
                yield _box(axis, row, probs.shape[1 + axis], col_axis, (o0, o1), oriented), probs
            continue
        src_shape = list(size)
        src_shape[col_axis] = m1 - m0
        dst_shape = list(oriented)
        dst_shape[col_axis] = o1 - o0
        cross = math.prod(dst_shape) // dst_shape[axis]
        rows = max(1, settings.max_memory // 4 // (classes * cross * 8 * 3))
        stream = resample_slabs(
            merged,
            axis=axis,
            src_affine=shifted(geometry.model_affine, col_axis, m0),
            src_shape=src_shape,
            dst_affine=shifted(geometry.oriented_affine, col_axis, o0),
            dst_shape=dst_shape,
            rows=rows,
            options=geometry.resample,
        )
        for row, probs in stream:
            yield _box(axis, row, probs.shape[1 + axis], col_axis, (o0, o1), oriented), probs


def stream_axis(members: Sequence[Member], size: Sequence[int]) -> int:
    """The slicing axis of most 2D members (lowest on ties), else the 3D members' cheapest."""
    views = Counter(m.info.slice_axis for m in members if m.info.mode == "2d")
    if views:
        top = max(views.values())
        return min(a for a, n in views.items() if n == top and a is not None)
    windowed = [m for m in members if m.info.patch_size is not None]
    if not windowed:
        return 0
    return best_axis(size, windowed[0].info.patch_size or size)


def _model_slabs(
    member: Member,
    image: Tensor,
    axis: int,
    settings: Settings,
    columns: tuple[int, int] | None,
    col_axis: int,
) -> Iterator[Slab]:
    info = member.info
    if info.mode == "2d":
        assert info.slice_axis == axis
        return slice_slabs(member.net, image, axis=axis, batch=settings.sw_batch_size)
    if info.patch_size is None:
        return _whole(member.net, image, columns, col_axis)
    return sliding_window_slabs(
        member.net,
        image,
        info.patch_size,
        axis=axis,
        overlap=settings.overlap,
        sw_batch_size=settings.sw_batch_size,
        columns=columns,
        column_axis=col_axis,
    )


def _whole(
    net: Callable[[Tensor], Tensor], image: Tensor, columns: tuple[int, int] | None, col_axis: int
) -> Iterator[Slab]:
    logits = net(image[None])[0]
    if columns is not None:
        logits = logits.narrow(1 + col_axis, columns[0], columns[1] - columns[0])
    yield 0, logits


class ProbabilitySum:
    """A running weighted sum of class probabilities (values in [0, 1]) over a grid.

    float32 when ``4 * K * V`` bytes fit the budget; otherwise 16-bit fixed point (int16 holding
    ``round(v * SCALE)``): 2 bytes per class and voxel with an absolute error below
    ``models / (2 * SCALE)`` (~2e-5 per model), 16x finer than float16 near 0.5.

    Args:
        shape: ``(K, *spatial)``.
        budget: bytes allowed; decides the storage.
        what: how to name the accumulator in the warning when it falls back to 16 bits.
    """

    SCALE = 32000.0  # < 32767, leaves room for the rounding of several terms summing to 1

    def __init__(self, shape: Sequence[int], budget: float, what: str) -> None:
        need = 4 * math.prod(shape)
        self.exact = need <= budget
        if not self.exact:
            log.warning(
                "%s: the float32 accumulator (%.3g GB) exceeds the %.3g GB budget; "
                "using 16-bit fixed point (%.3g GB)",
                what,
                need / GB,
                budget / GB,
                need / 2 / GB,
            )
        dtype = torch.float32 if self.exact else torch.int16
        self.values = torch.zeros(tuple(shape), dtype=dtype)

    @property
    def unit(self) -> float:
        """What one stored unit is worth (multiply stored values by it to get probabilities)."""
        return 1.0 if self.exact else 1.0 / self.SCALE

    def add(self, index: tuple[slice, ...], values: Tensor) -> None:
        """``sum[:, *index] += values`` (float32 ``(K, ...)`` on any device)."""
        target = self.values[(slice(None),) + index]
        if self.exact:
            target += values.to("cpu", torch.float32)
        else:
            target += torch.round(values.to("cpu", torch.float32) * self.SCALE).to(torch.int16)


def _off_axis_sum(
    members: Sequence[Member], image: Tensor, classes: int, settings: Settings
) -> ProbabilitySum:
    """Weighted probabilities of 2D members slicing across the streamed axis, summed."""
    total = ProbabilitySum((classes, *image.shape[1:]), settings.max_memory, "mixed-view ensemble")
    for m in members:
        axis = m.info.slice_axis
        assert axis is not None
        slabs = slice_slabs(m.net, image, axis=axis, batch=settings.sw_batch_size)
        for row, probs in softmax_slabs(slabs):
            index = tuple(
                slice(row, row + probs.shape[1 + d]) if d == axis else slice(None) for d in range(3)
            )
            total.add(index, probs * m.weight)
    return total


def _plan_blocks(
    on: Sequence[Member],
    has_extra: bool,
    geometry: Geometry,
    axis: int,
    classes: int,
    settings: Settings,
) -> tuple[int, list[tuple[int, int]]]:
    """The column axis and the oriented-grid column ranges to process one after another."""
    size = geometry.model_shape
    others = [d for d in range(3) if d != axis]
    col_axis = max(others, key=lambda d: (size[d], -d))
    n_cols = geometry.oriented_shape[col_axis]
    windowed = all(m.info.mode == "3d" and m.info.patch_size is not None for m in on)
    if not windowed or has_extra:
        return col_axis, [(0, n_cols)]
    grids = [WindowGrid(size, m.info.patch_size or size, settings.overlap) for m in on]
    if any(g.padded[col_axis] != g.size[col_axis] for g in grids):
        return col_axis, [(0, n_cols)]  # a window wider than the volume: nothing to split
    most = max(1, min(n_cols, min(size[col_axis] // max(1, g.roi[col_axis] // 2) for g in grids)))
    for n in range(1, most + 1):
        edges = [round(i * n_cols / n) for i in range(n + 1)]
        blocks = [(a, b) for a, b in zip(edges, edges[1:], strict=False) if b > a]
        need = 0
        for a, b in blocks:
            obox = tuple(
                (a, b) if d == col_axis else (0, geometry.oriented_shape[d]) for d in range(3)
            )
            m0, m1 = geometry.model_box(obox)[col_axis] if n > 1 else (0, size[col_axis])
            need = max(need, sum(g.buffer_bytes(classes, axis, col_axis, m1 - m0) for g in grids))
        if need <= settings.max_memory or n == most:
            if need > settings.max_memory:
                log.warning(
                    "sliding-window buffer %.3g GB exceeds the %.3g GB budget even in %d blocks",
                    need / GB,
                    settings.max_memory / GB,
                    n,
                )
            return col_axis, blocks
    return col_axis, [(0, n_cols)]


def _box(
    axis: int,
    row: int,
    rows: int,
    col_axis: int,
    cols: tuple[int, int],
    shape: Sequence[int],
) -> Box:
    out = []
    for d in range(3):
        if d == axis:
            out.append((row, row + rows))
        elif d == col_axis:
            out.append(cols)
        else:
            out.append((0, int(shape[d])))
    return tuple(out)
