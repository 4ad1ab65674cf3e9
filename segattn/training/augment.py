"""Random augmentation pipelines for 2D slices and 3D patches (MONAI dictionary transforms)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from monai.transforms import (
    Compose,
    MapTransform,
    RandAffined,
    RandCropByPosNegLabeld,
    RandFlipd,
    RandGaussianNoised,
    RandScaleIntensityd,
    RandShiftIntensityd,
    RandSpatialCropd,
    SpatialPadd,
)

DEFAULT_AUGMENTATION: dict[str, Any] = {
    "affine_prob": 0.5,
    "rotate_degrees": 10.0,
    "scale": 0.1,
    "flip_axes": [],  # spatial axes to flip at random; a left-right flip swaps L/R structures
    "flip_prob": 0.5,
    "intensity_prob": 0.5,
    "intensity_scale": 0.1,
    "intensity_shift": 0.1,
    "noise_prob": 0.2,
    "noise_std": 0.05,
}


def augmentation_settings(overrides: dict[str, Any] | None) -> dict[str, Any]:
    """Defaults merged with ``overrides``; unknown keys raise ``ValueError``."""
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(DEFAULT_AUGMENTATION))
    if unknown:
        raise ValueError(
            f"unknown augmentation keys {unknown}; valid keys: {sorted(DEFAULT_AUGMENTATION)}"
        )
    return {**DEFAULT_AUGMENTATION, **overrides}


def random_transforms(
    spatial_dims: int,
    patch_size: Sequence[int] | None,
    augmentation: dict[str, Any] | None,
    enabled: bool = True,
    pos_fraction: float | None = None,
    num_samples: int = 1,
    crop: MapTransform | None = None,
) -> Compose:
    """Random crop + augmentation of ``{"image", "label"}`` samples.

    Args:
        spatial_dims: 2 for slices, 3 for volumes.
        patch_size: crop size; ``None`` keeps the whole sample.
        augmentation: overrides of :data:`DEFAULT_AUGMENTATION`.
        enabled: ``False`` gives only the crop.
        pos_fraction: if set, crops are centred on foreground with this probability
            (``RandCropByPosNegLabeld``) and ``num_samples`` crops are drawn per sample.
        num_samples: crops per sample when ``pos_fraction`` is set.
        crop: a cropping transform used instead (after padding to ``patch_size``), e.g.
            :class:`segattn.training.class_sampling.RandClassBalancedCropd`.
    """
    keys = ["image", "label"]
    a = augmentation_settings(augmentation)
    chain: list[Any] = []
    if patch_size is not None:
        size = [int(s) for s in patch_size]
        chain.append(SpatialPadd(keys=keys, spatial_size=size))
        if crop is not None:
            chain.append(crop)
        elif pos_fraction is not None:
            chain.append(
                RandCropByPosNegLabeld(
                    keys=keys,
                    label_key="label",
                    spatial_size=size,
                    pos=pos_fraction,
                    neg=1.0 - pos_fraction,
                    num_samples=num_samples,
                    allow_smaller=True,
                )
            )
        else:
            chain.append(RandSpatialCropd(keys=keys, roi_size=size, random_size=False))
    if not enabled:
        return Compose(chain)
    rot = math.radians(float(a["rotate_degrees"]))
    rotate_range = [rot] if spatial_dims == 2 else [rot] * 3
    chain.append(
        RandAffined(
            keys=keys,
            prob=float(a["affine_prob"]),
            rotate_range=rotate_range,
            scale_range=[float(a["scale"])] * spatial_dims,
            mode=("bilinear", "nearest"),
            padding_mode="zeros",
        )
    )
    for axis in a["flip_axes"]:
        chain.append(RandFlipd(keys=keys, prob=float(a["flip_prob"]), spatial_axis=int(axis)))
    chain += [
        RandScaleIntensityd(
            keys="image", factors=float(a["intensity_scale"]), prob=float(a["intensity_prob"])
        ),
        RandShiftIntensityd(
            keys="image", offsets=float(a["intensity_shift"]), prob=float(a["intensity_prob"])
        ),
        RandGaussianNoised(keys="image", prob=float(a["noise_prob"]), std=float(a["noise_std"])),
    ]
    return Compose(chain)
