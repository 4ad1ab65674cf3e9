"""A PNG montage of an :class:`~segattn.inspect.scan.Explanation`.

Three orthogonal slices (sagittal, coronal, axial, in the closest RAS orientation) through the
centre of the predicted foreground: the first row shows the scan with the predicted labels, then
one row per block with a spatial gate over the scan (each row on its own colour scale, shown in
its colour bar), and a last panel with the channel gates (rows: blocks, columns: channels).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import nibabel as nib
import numpy as np

from segattn.fileio import atomic_path
from segattn.viz import label_colormap

if TYPE_CHECKING:
    from segattn.inspect.scan import Explanation

__all__ = ["orthogonal_slices", "save_montage"]

PLANES = ("sagittal", "coronal", "axial")


def _canonical(volume: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, tuple[float, ...]]:
    img = nib.as_closest_canonical(nib.Nifti1Image(volume, affine))
    zooms = tuple(float(z) for z in img.header.get_zooms()[:3])
    return np.asanyarray(img.dataobj), zooms


def orthogonal_slices(volume: np.ndarray, centre: tuple[int, int, int]) -> list[np.ndarray]:
    """Sagittal, coronal and axial slices of a RAS ``(X, Y, Z)`` volume through ``centre``,
    transposed for ``imshow(..., origin="lower")`` (superior / anterior up)."""
    x, y, z = centre
    return [volume[x, :, :].T, volume[:, y, :].T, volume[:, :, z].T]


def save_montage(explanation: Explanation, path: str | Path, alpha: float = 0.5) -> Path:
    """Write the montage PNG atomically and return its path.

    Args:
        explanation: scan, labels and gates.
        path: output ``.png``.
        alpha: opacity of the labels and gates over the scan.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    affine = explanation.reference.affine
    scan, zooms = _canonical(explanation.scan, affine)
    labels, _ = _canonical(explanation.labels, affine)
    spatial = [g for g in explanation.gates if g.spatial is not None]
    channel = [g for g in explanation.gates if g.channel is not None]
    fg = np.argwhere(labels > 0)
    centre = tuple(int(v) for v in (fg.mean(0).round() if len(fg) else np.array(scan.shape) // 2))
    aspects = [zooms[2] / zooms[1], zooms[2] / zooms[0], zooms[1] / zooms[0]]
    lo, hi = np.percentile(scan, [1, 99]) if scan.size else (0.0, 1.0)
    colours = label_colormap(max(explanation.label_names.values(), default=0) + 1)

    rows = 1 + len(spatial) + (1 if channel else 0)
    fig = plt.figure(figsize=(9.6, 2.9 * rows))
    grid = fig.add_gridspec(rows, 3)
    axes = np.array(
        [[fig.add_subplot(grid[r, c]) for c in range(3)] for r in range(1 + len(spatial))]
    )
    scan_slices = orthogonal_slices(scan, centre)  # type: ignore[arg-type]
    for col, (ax, image, lab) in enumerate(
        zip(axes[0], scan_slices, orthogonal_slices(labels, centre), strict=True)  # type: ignore[arg-type]
    ):
        ax.imshow(image, cmap="gray", vmin=lo, vmax=hi, origin="lower", aspect=aspects[col])
        rgba = colours[np.clip(lab.astype(int), 0, len(colours) - 1)]
        rgba[..., 3] = np.where(lab > 0, alpha, 0.0)
        ax.imshow(rgba, origin="lower", aspect=aspects[col], interpolation="nearest")
        ax.set_title(f"{PLANES[col]}: prediction", fontsize=9)
    for row, gate in enumerate(spatial, start=1):
        assert gate.spatial is not None
        volume, _ = _canonical(gate.spatial, affine)
        g_lo, g_hi = float(volume.min()), float(volume.max())
        image_handle = None
        for col, (ax, image, g) in enumerate(
            zip(axes[row], scan_slices, orthogonal_slices(volume, centre), strict=True)  # type: ignore[arg-type]
        ):
            ax.imshow(image, cmap="gray", vmin=lo, vmax=hi, origin="lower", aspect=aspects[col])
            image_handle = ax.imshow(
                g,
                cmap="magma",
                alpha=alpha,
                vmin=g_lo,
                vmax=g_hi,
                origin="lower",
                aspect=aspects[col],
            )
            suffix = " (mean over channels)" if gate.per_channel_map else ""
            ax.set_title(f"{gate.block} {gate.name}{suffix}", fontsize=8)
        if image_handle is not None:
            fig.colorbar(image_handle, ax=list(axes[row]), fraction=0.02, pad=0.01)
    if channel:
        ax = fig.add_subplot(grid[-1, :])
        width = max(len(g.channel) for g in channel if g.channel is not None)
        table = np.full((len(channel), width), np.nan, dtype=np.float32)
        for i, gate in enumerate(channel):
            assert gate.channel is not None
            table[i, : len(gate.channel)] = gate.channel
        handle = ax.imshow(table, aspect="auto", cmap="viridis", interpolation="nearest")
        ax.set_yticks(range(len(channel)), [g.block for g in channel], fontsize=7)
        ax.set_xlabel("channel", fontsize=8)
        ax.set_title("channel gates", fontsize=9)
        fig.colorbar(handle, ax=ax, fraction=0.02, pad=0.01)
    for ax in axes.ravel():
        ax.axis("off")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=64, format="png", bbox_inches="tight")
    finally:
        plt.close(fig)
    return path
