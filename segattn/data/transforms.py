"""MONAI preprocessing shared by training and inference.

The *preprocessing settings* are a plain dict stored in every checkpoint, so inference repeats
exactly what training did and MONAI can invert it::

    {"orientation": "RAS",                 # axcodes, or None to keep the stored orientation
     "spacing": None | [sx, sy, sz],       # target voxel size in mm (None: keep)
     "intensity": {"kind": "zscore", "nonzero": False}
                | {"kind": "ct", "window": [lo, hi]}   # clip HU to the window, scale to [0, 1]
                | {"kind": "ct_fitted", "percentiles": [0.5, 99.5],
                   "clip": [lo, hi], "mean": m, "std": s}   # fitted on the training foreground
                | {"kind": "none"}}

``ct_fitted`` is nnU-Net's CT normalisation (Isensee et al., Nature Methods 2021,
https://arxiv.org/abs/1809.10486): clip to the 0.5 and 99.5 percentiles of the intensities of the
labelled (foreground) voxels of the training cases, then z-score with those voxels' mean and
standard deviation. :func:`fit_ct_normalization` computes the values once from the training cases;
until then the settings hold only ``kind`` (and ``percentiles``) and cannot be applied.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
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

INTENSITY_KINDS = ("zscore", "ct", "ct_fitted", "none")
DEFAULT_PERCENTILES = (0.5, 99.5)
#: Foreground voxels drawn per training case (at most) when fitting ``ct_fitted``.
FIT_VOXELS_PER_CASE = 200_000

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
    if kind not in INTENSITY_KINDS:
        raise ValueError(f"intensity kind must be one of {list(INTENSITY_KINDS)}, got {kind!r}")
    if kind == "ct_fitted":
        intensity = _ct_fitted_settings(intensity)
    elif kind == "ct":
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
    if intensity["kind"] == "ct_fitted":
        if not is_fitted(intensity):
            raise ValueError(
                "ct_fitted intensity has no fitted values (clip, mean, std); the training "
                "DataModule fits them on the training cases (fit_ct_normalization)"
            )
        # clip to [lo, hi] and z-score in one linear map: (x - lo) / (hi - lo) * (b_max - b_min)
        # + b_min with b = (bound - mean) / std equals (x - mean) / std, clipped to [b_min, b_max]
        lo, hi = intensity["clip"]
        mean, std = intensity["mean"], intensity["std"]
        return ScaleIntensityRanged(
            keys=key,
            a_min=lo,
            a_max=hi,
            b_min=(lo - mean) / std,
            b_max=(hi - mean) / std,
            clip=True,
        )
    return None


def is_fitted(intensity: dict[str, Any]) -> bool:
    """Whether a ``ct_fitted`` intensity setting carries its fitted values."""
    return all(intensity.get(k) is not None for k in ("clip", "mean", "std"))


def fit_ct_normalization(
    cases: Iterable[tuple[np.ndarray, np.ndarray]],
    percentiles: Sequence[float] = DEFAULT_PERCENTILES,
    max_voxels_per_case: int = FIT_VOXELS_PER_CASE,
    seed: int = 0,
) -> dict[str, Any]:
    """Fit ``ct_fitted`` on the foreground (label > 0) intensities of training cases.

    The foreground voxels of all cases are pooled (at most ``max_voxels_per_case`` per case,
    drawn at random with ``seed`` so memory stays bounded for whole-body CT; all of them below
    that); the clip bounds are their ``percentiles`` (linear interpolation, as ``np.percentile``),
    ``mean`` and ``std`` (population) are those of the unclipped pooled voxels, as in nnU-Net.

    Args:
        cases: ``(image, label)`` pairs; ``image`` ``(C, *spatial)`` or ``(*spatial)``,
            ``label`` ``(*spatial)`` or ``(1, *spatial)`` on the same grid. All image channels
            are pooled (meant for single-channel CT).
        percentiles: lower and upper clip percentiles in [0, 100].
        max_voxels_per_case: foreground voxels kept per case.
        seed: seed of the subsampling.

    Returns:
        ``{"kind": "ct_fitted", "percentiles": [p_lo, p_hi], "clip": [lo, hi], "mean": m,
        "std": s}`` (plain floats).

    Raises:
        ValueError: bad percentiles, or no foreground voxel in any case.
    """
    p_lo, p_hi = _check_percentiles(percentiles)
    rng = np.random.default_rng(seed)
    pooled = []
    for image, label in cases:
        image, mask = np.asarray(image), np.asarray(label) > 0
        if mask.ndim == image.ndim:
            mask = mask[0]  # channel-first label (1, *spatial)
        if image.ndim == mask.ndim:
            image = image[None]
        values = image[:, mask].reshape(-1)
        if values.size > max_voxels_per_case:
            values = rng.choice(values, size=max_voxels_per_case, replace=False)
        pooled.append(values.astype(np.float64))
    voxels = np.concatenate(pooled) if pooled else np.zeros(0)
    if voxels.size == 0:
        raise ValueError("ct_fitted: the training cases have no foreground (label > 0) voxel")
    lo, hi = np.percentile(voxels, [p_lo, p_hi])
    std = float(voxels.std())
    return {
        "kind": "ct_fitted",
        "percentiles": [p_lo, p_hi],
        "clip": [float(lo), float(hi)],
        "mean": float(voxels.mean()),
        "std": std if std > 0 else 1.0,
    }


def _check_percentiles(percentiles: Any) -> tuple[float, float]:
    values = list(percentiles) if isinstance(percentiles, (list, tuple)) else []
    if len(values) != 2 or not 0.0 <= float(values[0]) < float(values[1]) <= 100.0:
        raise ValueError(f"ct_fitted percentiles must be [lo, hi] in 0..100, got {percentiles!r}")
    return float(values[0]), float(values[1])


def _ct_fitted_settings(intensity: dict[str, Any]) -> dict[str, Any]:
    percentiles = _check_percentiles(intensity.get("percentiles", list(DEFAULT_PERCENTILES)))
    out: dict[str, Any] = {"kind": "ct_fitted", "percentiles": list(percentiles)}
    if not any(intensity.get(k) is not None for k in ("clip", "mean", "std")):
        return out  # not fitted yet
    if not is_fitted(intensity):
        raise ValueError(f"ct_fitted needs all of clip, mean and std, got {intensity!r}")
    clip, mean, std = intensity["clip"], float(intensity["mean"]), float(intensity["std"])
    if len(clip) != 2 or float(clip[0]) >= float(clip[1]) or not std > 0:
        raise ValueError(
            f"ct_fitted needs clip=[lo, hi] with lo < hi and std > 0, got {intensity!r}"
        )
    return {**out, "clip": [float(clip[0]), float(clip[1])], "mean": mean, "std": std}


def _quiet_unused_dicom_reader() -> None:
    """MONAI's image loader also builds its pydicom reader when pydicom is installed (never used
    here: DICOM series are read by :mod:`segattn.imageio`), which reports on stderr that no GPU
    decoder is installed; keep that notice out of training, prediction and explain output."""
    logging.getLogger("monai.data.nvimgcodec_pydicom_plugin").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message="NvImgCodecPydicomReader")


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
    _quiet_unused_dicom_reader()
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
