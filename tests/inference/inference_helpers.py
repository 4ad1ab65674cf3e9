"""Helpers for the inference and predict/evaluate CLI tests: hand-built checkpoints, small NIfTI
volumes. (A plain module, not a conftest, so tests/cli can import it too.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import torch

from segattn.inference.checkpoint import CheckpointMeta
from segattn.nets import UNet

SHAPE = (20, 24, 18)
LABELS = {"background": 0, "left": 1, "right": 2}


def checkpoint_meta(
    mode: str = "3d",
    in_channels: int = 1,
    spacing: list[float] | None = None,
    orientation: str | None = "RAS",
    intensity: dict[str, Any] | None = None,
    slice_axis: int | None = None,
    patch_size: list[int] | None = None,
    labels: dict[str, int] | None = None,
) -> dict[str, Any]:
    labels = dict(labels or LABELS)
    kwargs = {
        "spatial_dims": 2 if mode == "2d" else 3,
        "in_channels": in_channels,
        "num_classes": len(labels),
        "features": [4, 8],
    }
    data_meta = {
        "labels": labels,
        "channel_names": {str(i): f"ch{i}" for i in range(in_channels)},
        "preprocessing": {
            "orientation": orientation,
            "spacing": spacing,
            "intensity": intensity or {"kind": "zscore", "nonzero": False},
        },
        "mode": mode,
        "slice_axis": slice_axis,
        "patch_size": patch_size,
    }
    return CheckpointMeta.for_net("unet", kwargs, data_meta).to_dict()


def save_checkpoint(path: Path, meta: dict[str, Any], seed: int = 0) -> Path:
    torch.manual_seed(seed)
    net = UNet(**meta["net"]["kwargs"])
    state = {"net." + k: v for k, v in net.state_dict().items()}
    state["loss.weight"] = torch.ones(3)  # other prefixes are ignored
    torch.save({"state_dict": state, "segattn": meta, "epoch": 3}, path)
    return path


def phantom(shape: tuple[int, ...] = SHAPE, seed: int = 0) -> np.ndarray:
    """A smooth blob plus noise: structured enough for random nets to predict several classes."""
    rng = np.random.default_rng(seed)
    grid = np.meshgrid(*[np.linspace(-1, 1, s) for s in shape[:3]], indexing="ij")
    blob = np.exp(-((grid[0] - 0.3) ** 2 + grid[1] ** 2 + (grid[2] + 0.2) ** 2) * 4)
    data = 100 * blob + 10 * grid[0] + rng.normal(scale=5, size=shape[:3])
    if len(shape) == 4:
        data = np.stack([data * (c + 1) + c for c in range(shape[3])], axis=-1)
    return data.astype(np.float32)


def oblique_affine(spacing: tuple[float, float, float] = (1.2, 0.9, 2.0)) -> np.ndarray:
    a, b = np.deg2rad(20), np.deg2rad(-35)
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    rz = np.array([[np.cos(b), -np.sin(b), 0], [np.sin(b), np.cos(b), 0], [0, 0, 1]])
    aff = np.eye(4)
    aff[:3, :3] = rz @ rx @ np.diag(spacing)
    aff[:3, 3] = [12.5, -30.0, 7.25]
    return aff


def save_image(
    path: Path,
    data: np.ndarray,
    affine: np.ndarray | None = None,
    qform_code: int = 1,
    sform_code: int = 2,
) -> Path:
    affine = np.diag([1.0, 1.0, 1.0, 1.0]) if affine is None else affine
    img = nib.Nifti1Image(data, affine)
    img.header.set_qform(affine, code=qform_code)
    img.header.set_sform(affine, code=sform_code)
    nib.save(img, path)
    return path
