"""Random crops and augmentation of 2D slices and 3D patches, on plain tensors.

One transform does the whole chain for a sample: pad to the patch size, crop, random affine
(rotation and scaling about the centre), flips, intensity scale and shift, Gaussian noise. Every
draw comes from one NumPy generator that :class:`segattn.training.sampling.SeededDataset` seeds
per ``(seed, epoch, index)``, so a sample is a pure function of those three.

The chain was MONAI's dictionary transforms (``SpatialPadd``, ``RandSpatialCropd``,
``RandAffined``, ``RandFlipd``, ``RandScaleIntensityd``, ``RandShiftIntensityd``,
``RandGaussianNoised``) until their per-sample cost showed up in the training step: 3.2 ms for
an 80 × 88 slice, most of it metadata bookkeeping, against a 16-slice training step of about
250 ms on 2 CPU cores (README, "The default recipe"). The operations and the distributions of
their parameters are the same; foreground-centred 3D crops still use MONAI's
``RandCropByPosNegLabeld`` and class-balanced ones
:class:`segattn.training.class_sampling.RandClassBalancedCropd`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from monai.transforms import MapTransform, RandCropByPosNegLabeld, Randomizable

from segattn.data.transforms import plain_tensor

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

_KEYS = ("image", "label")


def augmentation_settings(overrides: dict[str, Any] | None) -> dict[str, Any]:
    """Defaults merged with ``overrides``; unknown keys raise ``ValueError``."""
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(DEFAULT_AUGMENTATION))
    if unknown:
        raise ValueError(
            f"unknown augmentation keys {unknown}; valid keys: {sorted(DEFAULT_AUGMENTATION)}"
        )
    return {**DEFAULT_AUGMENTATION, **overrides}


def rotation_matrix(angles: Sequence[float]) -> np.ndarray:
    """``(d, d)`` rotation in array-axis order: one angle (radians) for 2D, rotating axis 0
    towards axis 1; three for 3D, about axes 0, 1 and 2 in turn (``R = R2 @ R1 @ R0``)."""
    if len(angles) == 1:
        c, s = math.cos(angles[0]), math.sin(angles[0])
        return np.array([[c, -s], [s, c]])
    if len(angles) != 3:
        raise ValueError(f"expected 1 (2D) or 3 (3D) angles, got {len(angles)}")
    matrix = np.eye(3)
    for axis, angle in enumerate(angles):
        i, j = [a for a in range(3) if a != axis]
        c, s = math.cos(angle), math.sin(angle)
        r = np.eye(3)
        r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
        matrix = r @ matrix
    return matrix


def affine_resample(x: torch.Tensor, matrix: np.ndarray, mode: str) -> torch.Tensor:
    """``x`` (C, *spatial) resampled on its own grid: output voxel ``p`` takes the value at
    ``centre + matrix @ (p - centre)`` (array-axis order, voxel units), zeros outside; integer
    inputs (labels) are sampled as floats and cast back."""
    d = x.ndim - 1
    size = torch.tensor(x.shape[1:], dtype=torch.float64)
    # affine_grid works in coordinates normalised to [-1, 1] per axis, ordered last axis first
    normalised = torch.from_numpy(matrix) * size[None, :] / size[:, None]
    theta = torch.zeros(1, d, d + 1, dtype=torch.float32)
    theta[0, :, :d] = normalised.flip(0, 1)
    grid = F.affine_grid(theta, [1, x.shape[0], *x.shape[1:]], align_corners=False)
    values = x if x.is_floating_point() else x.float()
    out = F.grid_sample(values[None], grid, mode=mode, padding_mode="zeros", align_corners=False)
    return out[0] if x.is_floating_point() else out[0].round().to(x.dtype)


class RandomSample:
    """Crop and augmentation of one ``{"image": (C, *s), "label": (1, *s)}`` sample.

    Other keys pass through. The result holds plain tensors; it is a list of samples when the
    crop transform returns several (``num_samples`` of a foreground-centred crop). Call
    :meth:`set_random_state` before each sample for reproducible draws.

    Args:
        spatial_dims: 2 for slices, 3 for patches.
        patch_size: crop size; samples smaller than it are zero-padded symmetrically first.
            ``None`` keeps the whole sample.
        augmentation: overrides of :data:`DEFAULT_AUGMENTATION` (checked by
            :func:`augmentation_settings`).
        enabled: ``False`` gives only the pad and crop.
        crop: a MONAI cropping transform used instead of a uniformly placed crop.
    """

    def __init__(
        self,
        spatial_dims: int,
        patch_size: Sequence[int] | None,
        augmentation: dict[str, Any] | None = None,
        enabled: bool = True,
        crop: MapTransform | None = None,
    ) -> None:
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
        if patch_size is not None and len(patch_size) != spatial_dims:
            raise ValueError(f"patch_size {list(patch_size)} is not {spatial_dims}D")
        self.spatial_dims = spatial_dims
        self.patch_size = None if patch_size is None else [int(s) for s in patch_size]
        self.settings = augmentation_settings(augmentation)
        self.enabled = bool(enabled)
        self.crop = crop
        self.rng = np.random.default_rng(0)

    def set_random_state(self, seed: int | None = None) -> RandomSample:
        """Restart the draws from ``seed`` (the crop transform's too)."""
        self.rng = np.random.default_rng(seed)
        if isinstance(self.crop, Randomizable):
            self.crop.set_random_state(seed=int(self.rng.integers(2**32)))
        return self

    def __call__(self, sample: dict[str, Any]) -> dict[str, Any] | list[dict[str, Any]]:
        item = {k: _plain(k, v) for k, v in sample.items()}
        if self.patch_size is not None:
            item = self._pad(item)
            if self.crop is not None:
                crops = self.crop(item)
                pieces = crops if isinstance(crops, list) else [crops]
                out = [self._augment({k: _plain(k, v) for k, v in p.items()}) for p in pieces]
                return out if isinstance(crops, list) else out[0]
            item = self._uniform_crop(item)
        return self._augment(item)

    def _pad(self, item: dict[str, Any]) -> dict[str, Any]:
        assert self.patch_size is not None
        shape = item["image"].shape[1:]
        short = [max(0, p - s) for p, s in zip(self.patch_size, shape, strict=True)]
        if not any(short):
            return item
        widths: list[int] = []
        for n in reversed(short):  # F.pad takes the last axis first
            widths += [n // 2, n - n // 2]
        return {k: (F.pad(v, widths) if k in _KEYS else v) for k, v in item.items()}

    def _uniform_crop(self, item: dict[str, Any]) -> dict[str, Any]:
        assert self.patch_size is not None
        shape = item["image"].shape[1:]
        index: list[slice] = [slice(None)]
        for p, s in zip(self.patch_size, shape, strict=True):
            start = int(self.rng.integers(s - p + 1))
            index.append(slice(start, start + p))
        return {k: (v[tuple(index)] if k in _KEYS else v) for k, v in item.items()}

    def _augment(self, item: dict[str, Any]) -> dict[str, Any]:
        if not self.enabled:
            return item
        a, rng, d = self.settings, self.rng, self.spatial_dims
        image, label = item["image"], item["label"]
        if rng.random() < a["affine_prob"]:
            limit = math.radians(float(a["rotate_degrees"]))
            angles = rng.uniform(-limit, limit, size=1 if d == 2 else 3)
            scales = 1.0 + rng.uniform(-a["scale"], a["scale"], size=d)
            matrix = rotation_matrix(angles.tolist()) @ np.diag(scales)
            image = affine_resample(image.float(), matrix, "bilinear")
            label = affine_resample(label, matrix, "nearest")
        for axis in a["flip_axes"]:
            if rng.random() < a["flip_prob"]:
                image, label = image.flip(1 + int(axis)), label.flip(1 + int(axis))
        if rng.random() < a["intensity_prob"]:
            image = image * float(1.0 + rng.uniform(-a["intensity_scale"], a["intensity_scale"]))
        if rng.random() < a["intensity_prob"]:
            image = image + float(rng.uniform(-a["intensity_shift"], a["intensity_shift"]))
        if rng.random() < a["noise_prob"]:
            std = float(rng.uniform(0.0, a["noise_std"]))
            noise = rng.standard_normal(tuple(image.shape), dtype=np.float32)
            image = image + std * torch.from_numpy(noise)
        return {**item, "image": image, "label": label}


def _plain(key: Any, value: Any) -> Any:
    return plain_tensor(value) if key in _KEYS else value


def random_transforms(
    spatial_dims: int,
    patch_size: Sequence[int] | None,
    augmentation: dict[str, Any] | None,
    enabled: bool = True,
    pos_fraction: float | None = None,
    num_samples: int = 1,
    crop: MapTransform | None = None,
) -> RandomSample:
    """Random crop + augmentation of ``{"image", "label"}`` samples (:class:`RandomSample`).

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
    if crop is None and pos_fraction is not None and patch_size is not None:
        crop = RandCropByPosNegLabeld(
            keys=list(_KEYS),
            label_key="label",
            spatial_size=[int(s) for s in patch_size],
            pos=pos_fraction,
            neg=1.0 - pos_fraction,
            num_samples=num_samples,
            allow_smaller=True,
        )
    return RandomSample(spatial_dims, patch_size, augmentation, enabled, crop)
