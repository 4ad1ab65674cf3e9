"""MONAI preprocessing shared by training and inference.

The *preprocessing settings* are a plain dict stored in every checkpoint, so inference repeats
exactly what training did and MONAI can invert it::

    {"orientation": "RAS",                 # axcodes, or None to keep the stored orientation
     "spacing": None | [sx, sy, sz],       # target voxel size in mm (None: keep)
     "intensity": {"kind": "zscore", "nonzero": False}
                | {"kind": "ct", "window": [lo, hi]}   # clip HU to the window, scale to [0, 1]
                | {"kind": "none"}}
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from monai.transforms import (
    Compose,
    EnsureChannelFirstd,
    EnsureTyped,
    LoadImaged,
    MapTransform,
    NormalizeIntensityd,
    Orientationd,
    ScaleIntensityRanged,
    Spacingd,
)

_RAS_LABELS = (("L", "R"), ("P", "A"), ("I", "S"))

DEFAULT_PREPROCESSING: dict[str, Any] = {
    "orientation": "RAS",
    "spacing": None,
    "intensity": {"kind": "zscore", "nonzero": False},
}


def plain_tensor(x: Any) -> torch.Tensor:
    """``x`` as a plain ``torch.Tensor``: MONAI ``MetaTensor`` metadata dropped, no copy.

    Metadata must not leak into logged metrics or checkpoints (it does not unpickle with
    ``weights_only=True``) or slow down the training loop.
    """
    return torch.as_tensor(x).as_subclass(torch.Tensor)


def normalize_preprocessing(settings: dict[str, Any] | None) -> dict[str, Any]:
    """Fill defaults and validate a preprocessing dict; returns a new plain dict.

    Raises:
        ValueError: unknown intensity kind, a bad window or spacing.
    """
    out: dict[str, Any] = {**DEFAULT_PREPROCESSING, **(settings or {})}
    intensity = {**DEFAULT_PREPROCESSING["intensity"], **(out.get("intensity") or {})}
    kind = intensity.get("kind", "zscore")
    if kind not in ("zscore", "ct", "none"):
        raise ValueError(f"intensity kind must be 'zscore', 'ct' or 'none', got {kind!r}")
    if kind == "ct":
        window = intensity.get("window")
        if window is None or len(window) != 2 or float(window[0]) >= float(window[1]):
            raise ValueError(f"ct intensity needs window=[lo, hi] with lo < hi, got {window!r}")
        intensity = {"kind": "ct", "window": [float(window[0]), float(window[1])]}
    elif kind == "zscore":
        intensity = {"kind": "zscore", "nonzero": bool(intensity.get("nonzero", False))}
    else:
        intensity = {"kind": "none"}
    spacing = out.get("spacing")
    if spacing is not None:
        spacing = [float(s) for s in spacing]
        if len(spacing) != 3 or min(spacing) <= 0:
            raise ValueError(f"spacing must be three positive numbers (mm), got {spacing!r}")
    orientation = out.get("orientation")
    if orientation is not None:
        orientation = str(orientation).upper()
    return {"orientation": orientation, "spacing": spacing, "intensity": intensity}


def intensity_transform(settings: dict[str, Any], key: str = "image") -> MapTransform | None:
    """The intensity normalisation of ``settings`` for ``key`` (None for kind 'none')."""
    intensity = normalize_preprocessing(settings)["intensity"]
    if intensity["kind"] == "zscore":
        return NormalizeIntensityd(keys=key, nonzero=intensity["nonzero"], channel_wise=True)
    if intensity["kind"] == "ct":
        lo, hi = intensity["window"]
        return ScaleIntensityRanged(keys=key, a_min=lo, a_max=hi, b_min=0.0, b_max=1.0, clip=True)
    return None


def preprocess_transforms(
    settings: dict[str, Any] | None, keys: Sequence[str] = ("image", "label")
) -> Compose:
    """Load, channel-first, orient, resample and normalise ``keys`` (``image`` [+ ``label``]).

    The image is resampled with bilinear interpolation and the label with nearest neighbour.
    Every spatial step is invertible with ``monai.transforms.Invertd``.
    """
    s = normalize_preprocessing(settings)
    keys = list(keys)
    modes = ["nearest" if k == "label" else "bilinear" for k in keys]
    chain: list[Any] = [
        LoadImaged(keys=keys, image_only=True),
        EnsureChannelFirstd(keys=keys),
        EnsureTyped(keys=keys, dtype=None, track_meta=True),
    ]
    if s["orientation"]:
        # explicit RAS labels: MONAI's default is changing, and the axcodes we store mean RAS+
        chain.append(Orientationd(keys=keys, axcodes=s["orientation"], labels=_RAS_LABELS))
    if s["spacing"] is not None:
        chain.append(Spacingd(keys=keys, pixdim=s["spacing"], mode=modes))
    norm = intensity_transform(s, "image")
    if norm is not None and "image" in keys:
        chain.append(norm)
    return Compose(chain)
