"""Bounded-memory forward passes: class scores of a volume produced slab by slab along one axis.

MONAI's ``sliding_window_inference`` accumulates Gaussian-weighted window logits in a float32
``(K, X, Y, Z)`` buffer plus a count map, so a 512 x 512 x 400 CT with 20 classes needs > 8 GB.
Here the *same* window grid and weights (MONAI's ``dense_patch_slices``, ``_get_scan_interval``,
``compute_importance_map``, zero padding of axes shorter than the window) are visited in order of
their start along one axis. When the next group of windows starts at row ``g``, no later window
touches rows ``< g``: those rows are final, are normalised by their summed weights and handed on,
and the buffer slides. The buffer spans one window along the streamed axis, so it holds
``K * roi[axis] * (cross-section)`` floats instead of ``K * volume``. The cross-section can be cut
into column blocks along a second axis (windows overlapping two blocks are run twice) to bound
the buffer further. Every voxel still gets exactly the windows and weights of the whole-volume
method; only the order of the float additions can differ when the streamed axis is not the first.

2D models stream naturally slice by slice, and a 3D model without a window runs once.

A *slab* is ``(start, scores)``: ``scores`` is ``(K, *spatial)`` covering rows
``start .. start + n`` along the streamed spatial axis (and, with column blocks, only the block's
columns); sources yield slabs in order and without gaps.
"""

from __future__ import annotations

import itertools
import math
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence

import torch
from monai.data.utils import compute_importance_map, dense_patch_slices
from monai.inferers.utils import _get_scan_interval
from torch import Tensor

Slab = tuple[int, Tensor]
Net = Callable[[Tensor], Tensor]

SIGMA_SCALE = 0.125  # MONAI's default, as in predict_volume


class WindowGrid:
    """MONAI's sliding-window grid over a whole volume (padded where shorter than the window).

    Args:
        size: spatial size of the image.
        roi: window size.
        overlap: overlap fraction in [0, 1).

    Attributes:
        pad_lo: zeros MONAI pads before each axis shorter than the window.
        padded: the padded size (``max(size, roi)`` per axis).
        starts: window starts in padded coordinates, in MONAI's order.
    """

    def __init__(self, size: Sequence[int], roi: Sequence[int], overlap: float) -> None:
        if len(size) != len(roi):
            raise ValueError(f"roi {tuple(roi)} and image size {tuple(size)} differ in rank")
        self.size = tuple(int(s) for s in size)
        self.roi = tuple(int(r) for r in roi)
        self.padded = tuple(max(s, r) for s, r in zip(self.size, self.roi, strict=True))
        self.pad_lo = tuple((p - s) // 2 for p, s in zip(self.padded, self.size, strict=True))
        ndim = len(self.size)
        interval = _get_scan_interval(self.padded, self.roi, ndim, (overlap,) * ndim)
        slices = dense_patch_slices(self.padded, self.roi, interval, return_slice=False)
        # return_slice=False gives ((start, stop), ...) per window
        self.starts = [tuple(int(pair[0]) for pair in win) for win in slices]  # type: ignore[index]

    def buffer_bytes(self, classes: int, axis: int, column_axis: int, columns: int) -> int:
        """Bytes of the sliding buffer (scores + weights) for a block ``columns`` wide."""
        shape = list(self.padded)
        shape[axis] = self.roi[axis]
        shape[column_axis] = min(self.padded[column_axis], columns + self.roi[column_axis])
        return (classes + 1) * 4 * int(torch.Size(shape).numel())


def best_axis(size: Sequence[int], roi: Sequence[int]) -> int:
    """The axis whose sliding buffer (``roi[axis]`` times the other padded sizes) is smallest."""
    padded = [max(s, r) for s, r in zip(size, roi, strict=True)]
    total = int(torch.Size(padded).numel())
    cost = [total // padded[a] * roi[a] for a in range(len(padded))]
    return min(range(len(cost)), key=lambda a: (cost[a], a))


def sliding_window_slabs(
    net: Net,
    image: Tensor,
    roi: Sequence[int],
    *,
    axis: int,
    overlap: float = 0.5,
    sw_batch_size: int = 4,
    columns: tuple[int, int] | None = None,
    column_axis: int | None = None,
    max_slab: int = 2**24,
) -> Iterator[Slab]:
    """Gaussian-blended sliding-window logits, slab by slab along ``axis``.

    Args:
        net: maps ``(B, C, *roi)`` to ``(B, K, *roi)`` logits.
        image: ``(C, *spatial)``.
        roi: window size.
        axis: spatial axis to stream along.
        overlap: window overlap in [0, 1).
        sw_batch_size: windows per forward pass.
        columns: only this range ``[lo, hi)`` of ``column_axis`` (image coordinates); windows
            overlapping it are run, the others skipped.
        column_axis: spatial axis of ``columns`` (not ``axis``).
        max_slab: most values per yielded slab (final rows are yielded in pieces of this size,
            so the consumer's per-slab temporaries stay small).

    Yields:
        ``(row, logits)`` with logits ``(K, *spatial)`` restricted to ``columns``, equal to
        MONAI's ``sliding_window_inference(..., mode="gaussian")`` on the whole image.
    """
    grid = WindowGrid(image.shape[1:], roi, overlap)
    ndim = len(grid.size)
    col_axis = column_axis if column_axis is not None else (axis + 1) % ndim
    if col_axis == axis:
        raise ValueError(f"column_axis must differ from axis, both are {axis}")
    lo_pad, pad_col = grid.pad_lo[axis], grid.pad_lo[col_axis]
    c0, c1 = (0, grid.size[col_axis]) if columns is None else columns
    c0, c1 = c0 + pad_col, c1 + pad_col  # padded coordinates
    roi_c = grid.roi[col_axis]
    starts = [s for s in grid.starts if s[col_axis] < c1 and s[col_axis] + roi_c > c0]
    starts.sort(key=lambda s: s[axis])  # stable: MONAI's order within a group
    e0 = min(s[col_axis] for s in starts)
    e1 = max(s[col_axis] for s in starts) + roi_c
    weight = compute_importance_map(
        grid.roi, mode="gaussian", sigma_scale=SIGMA_SCALE, device=image.device, dtype=image.dtype
    )
    shape = list(grid.padded)
    shape[axis] = grid.roi[axis]
    shape[col_axis] = e1 - e0
    acc: Tensor | None = None  # (K, *shape), allocated once K is known
    den = torch.zeros([1, *shape], dtype=image.dtype, device=image.device)
    row = 0  # padded row held at buffer index 0

    def region(start: Sequence[int]) -> tuple[slice, ...]:
        first = [start[d] - (row if d == axis else e0 if d == col_axis else 0) for d in range(ndim)]
        return (slice(None), *(slice(f, f + r) for f, r in zip(first, grid.roi, strict=True)))

    def emit(stop: int) -> Iterator[Slab]:
        # rows [row, stop) are final: normalise, crop padding and foreign columns
        lo, hi = max(row, lo_pad), min(stop, lo_pad + grid.size[axis])
        if hi <= lo:
            return
        assert acc is not None
        sel: list[slice] = [slice(None)]
        for d in range(ndim):
            if d == axis:
                sel.append(slice(0))
            elif d == col_axis:
                sel.append(slice(c0 - e0, c1 - e0))
            else:
                sel.append(slice(grid.pad_lo[d], grid.pad_lo[d] + grid.size[d]))
        rest = math.prod(n for d, n in enumerate(grid.size) if d not in (axis, col_axis))
        per_row = acc.shape[0] * (c1 - c0) * rest
        step = max(1, max_slab // max(1, per_row))
        for a in range(lo, hi, step):
            b = min(hi, a + step)
            sel[1 + axis] = slice(a - row, b - row)
            yield a - lo_pad, acc[tuple(sel)] / den[tuple(sel)]

    def slide(to: int) -> None:
        shift = to - row
        keep = grid.roi[axis] - shift
        assert acc is not None
        for buf in (acc, den):
            for r in range(max(keep, 0)):
                buf.select(axis + 1, r).copy_(buf.select(axis + 1, r + shift))
            buf.narrow(axis + 1, max(keep, 0), grid.roi[axis] - max(keep, 0)).zero_()

    for group_start, group in itertools.groupby(starts, key=lambda s: s[axis]):
        if acc is not None and group_start > row:
            yield from emit(group_start)
            slide(group_start)
        row = group_start
        windows = list(group)
        for i in range(0, len(windows), sw_batch_size):
            batch = windows[i : i + sw_batch_size]
            out = net(torch.stack([_window(image, grid, s) for s in batch]))
            out *= weight  # in place, as MONAI does
            if acc is None:
                acc = torch.zeros([out.shape[1], *shape], dtype=image.dtype, device=image.device)
            for s, o in zip(batch, out, strict=True):
                idx = region(s)
                acc[idx] += o
                den[idx] += weight
    yield from emit(row + grid.roi[axis])


def _window(image: Tensor, grid: WindowGrid, start: Sequence[int]) -> Tensor:
    """The ``(C, *roi)`` window at padded ``start``, zeros outside the image."""
    lo = [s - p for s, p in zip(start, grid.pad_lo, strict=True)]
    inside = all(a >= 0 and a + r <= n for a, r, n in zip(lo, grid.roi, grid.size, strict=True))
    if inside:
        window = tuple(slice(a, a + r) for a, r in zip(lo, grid.roi, strict=True))
        return image[(slice(None),) + window]
    out = image.new_zeros((image.shape[0], *grid.roi))
    src, dst = [slice(None)], [slice(None)]
    for a, r, n in zip(lo, grid.roi, grid.size, strict=True):
        a0, a1 = max(a, 0), min(a + r, n)
        src.append(slice(a0, a1))
        dst.append(slice(a0 - a, a1 - a))
    out[tuple(dst)] = image[tuple(src)]
    return out


def slice_slabs(net: Net, image: Tensor, *, axis: int, batch: int = 16) -> Iterator[Slab]:
    """2D logits of the slices along ``axis``, ``batch`` slices per forward pass.

    Yields:
        ``(row, logits)`` with logits ``(K, *spatial)``, ``batch`` rows along ``axis``.
    """
    slices = torch.movedim(image, 1 + axis, 0)  # (S, C, a, b), as in predict_volume
    for i in range(0, slices.shape[0], batch):
        yield i, torch.movedim(net(slices[i : i + batch]), 0, 1 + axis)


def tensor_slabs(scores: Tensor, *, axis: int, rows: int) -> Iterator[Slab]:
    """Slabs of ``rows`` rows of an existing ``(K, *spatial)`` tensor (views, no copy)."""
    size = scores.shape[1 + axis]
    for i in range(0, size, max(1, rows)):
        yield i, scores.narrow(1 + axis, i, min(rows, size - i))


def softmax_slabs(slabs: Iterable[Slab]) -> Iterator[Slab]:
    """Class probabilities (softmax over dim 0, float32) of logit slabs."""
    for row, logits in slabs:
        yield row, torch.softmax(logits.float(), dim=0)


class RowBuffer:
    """Rows of a slab stream held until released: ``get(lo, hi)`` pulls as needed."""

    def __init__(self, slabs: Iterable[Slab], axis: int) -> None:
        self._slabs = iter(slabs)
        self._dim = 1 + axis
        self._pieces: deque[Slab] = deque()
        self.end = 0  # rows [.., end) have been pulled

    def fill(self, stop: int) -> None:
        while self.end < stop:
            try:
                row, t = next(self._slabs)
            except StopIteration:
                raise RuntimeError(f"slab stream ended at row {self.end}, needed {stop}") from None
            if row != self.end:
                raise RuntimeError(f"slab stream jumped from row {self.end} to {row}")
            self._pieces.append((row, t))
            self.end += t.shape[self._dim]

    def get(self, lo: int, hi: int) -> Tensor:
        """Rows ``[lo, hi)`` (pulled if needed; must not have been released)."""
        self.fill(hi)
        parts = []
        for row, t in self._pieces:
            n = t.shape[self._dim]
            a, b = max(lo, row), min(hi, row + n)
            if a < b:
                parts.append(t.narrow(self._dim, a - row, b - a))
        if not parts or sum(p.shape[self._dim] for p in parts) != hi - lo:
            raise RuntimeError(f"rows [{lo}, {hi}) are no longer held")
        return parts[0] if len(parts) == 1 else torch.cat(parts, self._dim)

    def release(self, stop: int) -> None:
        """Forget pieces that end at or before row ``stop``."""
        while self._pieces and self._pieces[0][0] + self._pieces[0][1].shape[self._dim] <= stop:
            self._pieces.popleft()

    def first_end(self) -> int:
        """End row of the oldest held piece (pulling one if none is held)."""
        if not self._pieces:
            self.fill(self.end + 1)
        row, t = self._pieces[0]
        return row + t.shape[self._dim]


def merge_slabs(
    sources: Sequence[Iterable[Slab]], weights: Sequence[float], *, axis: int, size: int
) -> Iterator[Slab]:
    """Weighted sum of several slab streams over the same grid, slab by slab.

    Args:
        sources: streams over rows ``0 .. size`` of ``axis`` (any slab heights).
        weights: one factor per stream.
        axis: the streamed spatial axis.
        size: rows in total.
    """
    if len(sources) == 1 and weights[0] == 1.0:
        yield from sources[0]
        return
    buffers = [RowBuffer(s, axis) for s in sources]
    pos = 0
    while pos < size:
        for b in buffers:
            b.fill(pos + 1)
        stop = min(b.first_end() for b in buffers)
        total: Tensor | None = None
        for b, w in zip(buffers, weights, strict=True):
            part = b.get(pos, stop).float()
            if total is None:
                total = part * w
            else:
                total.add_(part.to(total.device) * w)
            b.release(stop)
        assert total is not None
        yield pos, total
        pos = stop
