"""Slab-wise inversion of the preprocessing geometry: model grid -> oriented grid -> input grid.

Preprocessing (``segattn.data.transforms``) orients the scan (MONAI ``Orientationd``: a flip and
permutation of the voxel axes) and may resample it (``Spacingd``: same axis directions, new voxel
size). Inverting with MONAI's ``Invertd`` needs the whole ``(K, *grid)`` probability volume. Here:

- resampling back is done slab by slab with the very transform ``Invertd`` would use
  (``SpatialResample`` with the recorded mode/padding/align_corners/dtype), each output slab from
  just the model-grid rows it needs (the bounding rows of its corners, plus one row each side);
- the orientation is undone by index arithmetic: the oriented grid is a signed permutation of the
  input grid, so every oriented slab is written straight into the input-grid array (a transpose
  and flips of the slab, no full-volume copy).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import SpatialResample
from torch import Tensor

from segattn.data.transforms import plain_tensor
from segattn.inference.slabs import RowBuffer, Slab

Box = tuple[tuple[int, int], ...]  # [lo, hi) per spatial axis


@dataclass
class Geometry:
    """The three voxel grids of one preprocessed scan.

    Attributes:
        input_affine / input_shape: the file's grid (as MONAI read it).
        oriented_affine / oriented_shape: after the orientation step (= input without one).
        model_affine / model_shape: what the network sees (= oriented without resampling).
        resample: ``SpatialResample`` arguments that undo the resampling step, or None.
    """

    input_affine: np.ndarray
    input_shape: tuple[int, ...]
    oriented_affine: np.ndarray
    oriented_shape: tuple[int, ...]
    model_affine: np.ndarray
    model_shape: tuple[int, ...]
    resample: dict[str, Any] | None

    def __post_init__(self) -> None:
        self._perm, self._sign, self._offset = _signed_permutation(
            self.oriented_affine, self.input_affine
        )

    @classmethod
    def of(cls, image: MetaTensor) -> Geometry:
        """Read the grids from a preprocessed image's MONAI transform trace."""
        model_affine = _np(image.affine)
        model_shape = tuple(int(s) for s in image.shape[1:])
        oriented_affine, oriented_shape, resample = model_affine, model_shape, None
        input_affine, input_shape = None, None
        for op in image.applied_operations:
            name, info = op["class"], op.get("extra_info") or {}
            if name == "SpatialResample":
                oriented_affine = _np(info["src_affine"])
                oriented_shape = tuple(int(s) for s in op["orig_size"])
                resample = {
                    "mode": info["mode"],
                    "padding_mode": info["padding_mode"],
                    "align_corners": bool(info["align_corners"])
                    if isinstance(info["align_corners"], bool)
                    else False,
                    "dtype": getattr(torch, str(info["dtype"])),
                }
            elif name == "Orientation":
                input_affine = _np(info["original_affine"])
                input_shape = tuple(int(s) for s in op["orig_size"])
            else:
                raise RuntimeError(f"cannot invert preprocessing step {name!r} slab-wise")
        if input_affine is None or input_shape is None:
            input_affine, input_shape = oriented_affine, oriented_shape
        return cls(
            input_affine,
            input_shape,
            oriented_affine,
            oriented_shape,
            model_affine,
            model_shape,
            resample,
        )

    def model_box(self, box: Box) -> Box:
        """The model-grid box an oriented-grid ``box`` needs for interpolation (identity without
        resampling), clipped to the model grid."""
        if self.resample is None:
            return box
        return _needed_box(self.model_affine, self.model_shape, self.oriented_affine, box)

    def to_input(self, box: Box, slab: Tensor) -> tuple[tuple[slice, ...], Tensor]:
        """Where an oriented-grid ``box`` lies in the input grid, and ``slab`` rearranged to fit.

        Args:
            box: ``[lo, hi)`` per oriented axis.
            slab: ``(*lead, *box sizes)``.

        Returns:
            the input-grid index (spatial axes only) and a view of ``slab`` with its spatial axes
            permuted and flipped into input order.
        """
        lead = slab.ndim - 3
        index: list[slice] = [slice(0)] * 3
        flips = []
        for k, (lo, hi) in enumerate(box):
            j, s, t = self._perm[k], self._sign[k], self._offset[k]
            if s > 0:
                index[j] = slice(lo - t, hi - t)
            else:
                index[j] = slice(t - hi + 1, t - lo + 1)
                flips.append(lead + k)
        if flips:
            slab = torch.flip(slab, flips)
        order = [self._perm.index(j) for j in range(3)]  # oriented axis feeding input axis j
        slab = slab.permute(*range(lead), *(lead + k for k in order))
        return tuple(index), slab


def resample_slabs(
    slabs: Iterable[Slab],
    *,
    axis: int,
    src_affine: np.ndarray,
    src_shape: Sequence[int],
    dst_affine: np.ndarray,
    dst_shape: Sequence[int],
    rows: int,
    options: dict[str, Any],
) -> Iterator[Slab]:
    """Resample a slab stream on one grid onto another, ``rows`` output rows at a time.

    Args:
        slabs: ``(K, ...)`` slabs of the source grid along ``axis``, in order.
        axis: streamed spatial axis (of both grids).
        src_affine / src_shape: the source grid the slabs cover.
        dst_affine / dst_shape: the destination grid.
        rows: destination rows per step.
        options: ``SpatialResample`` keyword arguments (mode, padding_mode, align_corners, dtype).

    Yields:
        ``(row, values)`` slabs of the destination grid, float32.
    """
    resampler = SpatialResample(**options)
    n = int(dst_shape[axis])
    steps = []
    for r0 in range(0, n, max(1, rows)):
        r1 = min(n, r0 + rows)
        box = tuple((r0, r1) if d == axis else (0, int(dst_shape[d])) for d in range(3))
        need = _needed_box(src_affine, src_shape, dst_affine, box)[axis]
        steps.append((r0, r1, need))
    # rows below the smallest later need can be released
    keep_from = [min(s[2][0] for s in steps[i + 1 :]) for i in range(len(steps) - 1)]
    held = RowBuffer(slabs, axis)
    for i, (r0, r1, (q0, q1)) in enumerate(steps):
        src = held.get(q0, q1)
        size = [int(s) for s in dst_shape]
        size[axis] = r1 - r0
        moved = MetaTensor(src, affine=torch.as_tensor(src_affine @ _shift(axis, q0)))
        out = resampler(
            moved, dst_affine=torch.as_tensor(dst_affine @ _shift(axis, r0)), spatial_size=size
        )
        yield r0, plain_tensor(out).float()
        if i < len(keep_from):
            held.release(keep_from[i])


def shifted(affine: np.ndarray, axis: int, offset: int) -> np.ndarray:
    """The affine of a sub-grid starting ``offset`` voxels along ``axis``."""
    return affine @ _shift(axis, offset)


def _shift(axis: int, offset: int) -> np.ndarray:
    t = np.eye(4)
    t[axis, 3] = offset
    return t


def _needed_box(
    src_affine: np.ndarray, src_shape: Sequence[int], dst_affine: np.ndarray, box: Box
) -> Box:
    """Source voxels that (bi/tri)linear interpolation reads for the destination ``box``."""
    to_src = np.linalg.solve(src_affine, dst_affine)
    corners = np.array(
        [[*c, 1.0] for c in itertools.product(*[(lo, hi - 1) for lo, hi in box])], dtype=float
    )
    mapped = corners @ to_src.T
    out = []
    for d in range(3):
        n = int(src_shape[d])
        lo = math.floor(mapped[:, d].min()) - 1
        hi = math.floor(mapped[:, d].max()) + 3
        lo = min(max(lo, 0), n - 1)
        hi = max(min(hi, n), lo + 1)
        out.append((lo, hi))
    return tuple(out)


def _signed_permutation(
    oriented: np.ndarray, original: np.ndarray
) -> tuple[list[int], list[int], list[int]]:
    """For each oriented axis k: the input axis j, sign and offset with o_k = s * i_j + t_k."""
    m = np.linalg.solve(oriented, original)  # input voxel -> oriented voxel
    r = np.rint(m)
    perm, sign, offset = [], [], []
    for k in range(3):
        j = int(np.argmax(np.abs(r[k, :3])))
        perm.append(j)
        sign.append(int(r[k, j]))
        offset.append(int(r[k, 3]))
    ok = (
        np.allclose(m, r, atol=1e-3)
        and sorted(perm) == [0, 1, 2]
        and all(abs(s) == 1 for s in sign)
        and np.count_nonzero(r[:3, :3]) == 3
    )
    if not ok:
        raise RuntimeError(f"oriented grid is not a flip/permutation of the input grid:\n{m}")
    return perm, sign, offset


def _np(affine: Any) -> np.ndarray:
    return np.asarray(affine.detach().cpu() if isinstance(affine, Tensor) else affine, float)
