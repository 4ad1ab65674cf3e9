"""Class-balanced choice of training patches (3D) and slices (2D).

With ``sampling="classes"`` every training sample is centred on (3D) or contains (2D) a voxel of a
foreground class drawn *uniformly among the classes present in the case*, so an adrenal gland of
70 voxels is drawn as often as the liver; a share ``random_fraction`` of the samples is centred on
a uniformly random voxel instead, so the network also sees background context. This is the idea of
MONAI's ``RandCropByLabelClassesd`` with equal class ratios and of nnU-Net's foreground
oversampling (Isensee et al., https://arxiv.org/abs/1809.10486), with two departures: the
random share is uniform over the whole volume (not over background voxels), and absent classes
are skipped without a warning (in partially annotated data they are the rule).
``sampling="foreground"`` keeps the earlier behaviour (MONAI ``RandCropByPosNegLabeld``: a
foreground voxel of any class with probability ``pos_fraction``, otherwise a background voxel; in
2D every slice equally often).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.transforms import MapTransform, Randomizable

SAMPLING_MODES = ("foreground", "classes")


def check_sampling(sampling: str, random_fraction: float) -> None:
    """Raise ``ValueError`` for an unknown sampling mode or a fraction outside [0, 1]."""
    if sampling not in SAMPLING_MODES:
        raise ValueError(f"sampling must be one of {list(SAMPLING_MODES)}, got {sampling!r}")
    if not 0.0 <= random_fraction <= 1.0:
        raise ValueError(f"sampling_random_fraction must be in [0, 1], got {random_fraction}")


class RandClassBalancedCropd(Randomizable, MapTransform):
    """``num_samples`` crops of ``spatial_size``, each centred on a class-balanced voxel.

    For each crop: with probability ``random_fraction`` (or when the label has no foreground) the
    centre is a uniformly random voxel; otherwise a foreground class is drawn uniformly among the
    classes present in ``label`` and the centre uniformly among that class's voxels. The crop
    window is then shifted, where needed, to lie inside the volume (pad the sample to at least
    ``spatial_size`` first, e.g. with ``SpatialPadd``), so it always contains its centre voxel.
    Keys other than ``keys`` are copied into every crop.

    Args:
        keys: keys of the ``(C, *spatial)`` arrays to crop (the image and the label).
        label_key: key of the ``(1, *spatial)`` integer label.
        spatial_size: crop size, one value per spatial axis.
        num_samples: crops returned per call.
        random_fraction: share of crops centred on a uniformly random voxel.

    Example:
        >>> crop = RandClassBalancedCropd(["image", "label"], "label", [8, 8, 8], num_samples=2)
        >>> label = torch.zeros(1, 20, 18, 16, dtype=torch.uint8); label[0, 3, 4, 5] = 2
        >>> out = crop({"image": torch.rand(1, 20, 18, 16), "label": label})
        >>> len(out), tuple(out[0]["image"].shape)
        (2, (1, 8, 8, 8))
    """

    def __init__(
        self,
        keys: Sequence[str],
        label_key: str,
        spatial_size: Sequence[int],
        num_samples: int = 1,
        random_fraction: float = 0.0,
    ) -> None:
        MapTransform.__init__(self, keys)
        check_sampling("classes", random_fraction)
        if num_samples < 1 or not spatial_size or min(int(s) for s in spatial_size) < 1:
            raise ValueError(
                f"need num_samples >= 1 and a positive spatial_size, got {num_samples}, "
                f"{list(spatial_size)}"
            )
        self.label_key = label_key
        self.spatial_size = [int(s) for s in spatial_size]
        self.num_samples = int(num_samples)
        self.random_fraction = float(random_fraction)

    def randomize(self, data: Any = None) -> None:
        """Unused: :meth:`sample_centres` draws from ``self.R`` directly."""

    def sample_centres(self, label: torch.Tensor) -> list[tuple[int, ...]]:
        """Draw ``num_samples`` centre voxels of ``label`` ``(1, *spatial)`` from ``self.R``."""
        spatial = tuple(label.shape[1:])
        flat = torch.as_tensor(label).reshape(-1)
        counts = torch.bincount(flat.long())
        present = [k for k in range(1, counts.numel()) if counts[k] > 0]
        voxels: dict[int, torch.Tensor] = {}  # class -> its flat voxel indices, found once
        centres = []
        for _ in range(self.num_samples):
            if not present or self.R.random_sample() < self.random_fraction:
                index = int(self.R.randint(flat.numel()))
            else:
                cls = present[int(self.R.randint(len(present)))]
                if cls not in voxels:
                    voxels[cls] = torch.nonzero(flat == cls).reshape(-1)
                index = int(voxels[cls][int(self.R.randint(voxels[cls].numel()))])
            centres.append(tuple(int(i) for i in np.unravel_index(index, spatial)))
        return centres

    def crop_start(self, centre: Sequence[int], spatial: Sequence[int]) -> list[int]:
        """First voxel of the crop around ``centre`` in a volume of ``spatial`` size."""
        return [
            min(max(c - s // 2, 0), max(dim - s, 0))
            for c, s, dim in zip(centre, self.spatial_size, spatial)
        ]

    def __call__(self, data: Mapping[Hashable, Any]) -> list[dict[Hashable, Any]]:
        label = data[self.label_key]
        spatial = tuple(label.shape[1:])
        if len(spatial) != len(self.spatial_size):
            raise ValueError(
                f"spatial_size {self.spatial_size} does not match the label's spatial shape "
                f"{spatial}"
            )
        out = []
        for centre in self.sample_centres(label):
            start = self.crop_start(centre, spatial)
            window = tuple(
                slice(b, b + s) for b, s in zip(start, self.spatial_size)
            )  # clipped by slicing where the volume is smaller than the crop
            crop = dict(data)
            for key in self.key_iterator(crop):
                crop[key] = data[key][(slice(None),) + window]
            out.append(crop)
        return out


def class_balanced_slice_weights(
    labels: Sequence[torch.Tensor], axis: int, random_fraction: float
) -> torch.Tensor:
    """Probability of each slice under 2D class-balanced sampling.

    A volume is drawn uniformly; with probability ``random_fraction`` (or when the volume has no
    foreground) one of its slices uniformly, otherwise a foreground class uniformly among those
    present in the volume and a voxel uniformly among that class's voxels, whose slice is taken.
    So each present class is contained in a drawn slice at least ``(1 - random_fraction) /
    n_present`` of the time, however small it is.

    Args:
        labels: ``(1, X, Y, Z)`` integer labels of the training volumes.
        axis: spatial axis sliced along (0, 1, 2).
        random_fraction: share of uniformly drawn slices.

    Returns:
        float64 ``(sum of slice counts,)``, in the order volume by volume, slice by slice (that of
        :class:`segattn.training.datamodule.SliceDataset`), summing to 1.
    """
    check_sampling("classes", random_fraction)
    weights = []
    for label in labels:
        volume = torch.as_tensor(label)[0].movedim(axis, 0)
        n_slices = volume.shape[0]
        classes = int(volume.max()) + 1
        slice_of = torch.arange(n_slices).view(-1, *[1] * (volume.ndim - 1)).expand_as(volume)
        code = volume.long() * n_slices + slice_of
        counts = torch.bincount(code.reshape(-1), minlength=classes * n_slices)
        counts = counts.view(classes, n_slices).double()[1:]  # (foreground classes, slices)
        totals = counts.sum(1)
        present = totals > 0
        uniform = torch.full((n_slices,), 1.0 / n_slices, dtype=torch.float64)
        if not bool(present.any()):
            weights.append(uniform)
            continue
        per_class = (counts[present] / totals[present, None]).mean(0)
        weights.append(random_fraction * uniform + (1.0 - random_fraction) * per_class)
    if not weights:
        return torch.zeros(0, dtype=torch.float64)
    return torch.cat(weights) / len(weights)
