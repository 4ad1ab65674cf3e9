"""Figures: image / ground truth / prediction overlays (matplotlib, no display needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from segattn.fileio import atomic_path


def label_colormap(num_classes: int) -> np.ndarray:
    """``(num_classes, 4)`` RGBA colours; background transparent, the rest from ``tab20``."""
    import matplotlib

    cmap = matplotlib.colormaps["tab20"]
    colours = np.array([cmap(i % 20) for i in range(max(num_classes, 1))], dtype=float)
    colours[0] = (0.0, 0.0, 0.0, 0.0)
    return colours


def save_overlay(
    image: np.ndarray,
    truth: np.ndarray | None,
    prediction: np.ndarray,
    path: str | Path,
    num_classes: int,
    title: str = "",
    alpha: float = 0.5,
) -> Path:
    """Write a PNG with the image, the truth over it and the prediction over it, side by side.

    Args:
        image: 2D slice (already oriented for display: rows top to bottom).
        truth: 2D label slice or ``None``.
        prediction: 2D label slice.
        path: output ``.png``; written atomically.
        num_classes: number of classes, fixes the colours.
        title: figure title.
        alpha: label opacity.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    colours = label_colormap(num_classes)
    panels = (
        [("image", None)]
        + ([("truth", truth)] if truth is not None else [])
        + [("prediction", prediction)]
    )
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.6))
    lo, hi = np.percentile(image, [1, 99]) if image.size else (0.0, 1.0)
    for ax, (name, labels) in zip(np.atleast_1d(axes), panels):
        ax.imshow(image, cmap="gray", vmin=lo, vmax=hi, interpolation="nearest")
        if labels is not None:
            rgba = colours[np.clip(labels.astype(int), 0, num_classes - 1)]
            rgba[..., 3] = np.where(labels > 0, alpha, 0.0)
            ax.imshow(rgba, interpolation="nearest")
        ax.set_title(name)
        ax.axis("off")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=100, format="png")
    finally:
        plt.close(fig)
    return path
