"""LightningDataModule over an nnU-Net v2 (or MSD) dataset root, in 2D-slice or 3D-patch mode."""

from __future__ import annotations

import contextlib
import functools
import logging
import os
from collections.abc import Callable, Sequence
from functools import cached_property
from typing import Any, Literal

import lightning.pytorch as pl
import torch
from monai.data import CacheDataset, list_data_collate
from monai.data import DataLoader as MonaiDataLoader
from torch.utils.data import Dataset

from segattn.data.layout import DATASET_JSON, Case, DatasetInfo, load_dataset, split_cases
from segattn.data.transforms import (
    fit_ct_normalization,
    is_fitted,
    normalize_preprocessing,
    plain_tensor,
    preprocess_transforms,
)
from segattn.errors import SegattnError
from segattn.evaluation import read_missing_labels
from segattn.training.augment import augmentation_settings, random_transforms
from segattn.training.cache import PreprocessedCache, VolumeDataset, default_cache_root
from segattn.training.class_sampling import (
    RandClassBalancedCropd,
    check_sampling,
    class_balanced_slice_weights,
)
from segattn.training.partial_labels import annotated_masks
from segattn.training.sampling import ResumableDataLoader, SeededDataset, next_batch_position

log = logging.getLogger(__name__)

Transform = Callable[[dict[str, Any]], Any]

SLICE_AXES = {"sagittal": 0, "coronal": 1, "axial": 2}
DEFAULT_CT_WINDOW = (-160.0, 240.0)


def slice_axis_index(axis: str | int) -> int:
    """Spatial axis (0, 1, 2) of a RAS-oriented volume for a view name or index."""
    if isinstance(axis, str) and axis.lower() in SLICE_AXES:
        return SLICE_AXES[axis.lower()]
    if isinstance(axis, int) and axis in (0, 1, 2):
        return axis
    raise ValueError(f"slice_axis must be one of {list(SLICE_AXES)} or 0/1/2, got {axis!r}")


class SliceDataset(Dataset):
    """2D samples: every slice along ``axis`` of in-memory volumes, with random transforms.

    Args:
        volumes: ``(image (C, X, Y, Z), label (1, X, Y, Z))`` pairs.
        axis: spatial axis to slice along.
        transform: applied to ``{"image": (C, a, b), "label": (1, a, b)}``.
        annotated: per volume, the ``(K,)`` bool mask of annotated classes, added to each sample
            as ``"annotated"`` (see :mod:`segattn.training.partial_labels`).
    """

    def __init__(
        self,
        volumes: Sequence[tuple[torch.Tensor, torch.Tensor]],
        axis: int,
        transform: Transform,
        annotated: Sequence[torch.Tensor] | None = None,
    ) -> None:
        self.volumes = volumes  # a list in memory or lazily mapped cache entries
        self.axis = axis
        self.transform = transform
        self.annotated = list(annotated) if annotated is not None else None
        self.index = [
            (v, s) for v, (img, _) in enumerate(self.volumes) for s in range(img.shape[1 + axis])
        ]

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict[str, Any]:
        v, s = self.index[i]
        image, label = self.volumes[v]
        sample = {
            "image": image.select(1 + self.axis, s),
            "label": label.select(1 + self.axis, s),
        }
        if self.annotated is not None:
            sample["annotated"] = self.annotated[v]
        return self.transform(sample)


class PatchDataset(Dataset):
    """3D samples: ``num_samples`` random patches per in-memory volume (a list per item), each
    with the volume's ``(K,)`` ``"annotated"`` mask when ``annotated`` is given."""

    def __init__(
        self,
        volumes: Sequence[tuple[torch.Tensor, torch.Tensor]],
        transform: Transform,
        annotated: Sequence[torch.Tensor] | None = None,
    ) -> None:
        self.volumes = volumes  # a list in memory or lazily mapped cache entries
        self.transform = transform
        self.annotated = list(annotated) if annotated is not None else None

    def __len__(self) -> int:
        return len(self.volumes)

    def __getitem__(self, i: int) -> Any:
        image, label = self.volumes[i]
        sample = {"image": image, "label": label}
        if self.annotated is not None:
            sample["annotated"] = self.annotated[i]
        return self.transform(sample)


#: default niceness added to the training DataLoader workers
WORKER_NICENESS = 10


def yield_cpu_to_training(worker_id: int, niceness: int = WORKER_NICENESS) -> None:
    """DataLoader ``worker_init_fn``: lower the worker's CPU priority by ``niceness``.

    Training steps run their tensor threads on every core. A worker preparing the next batches at
    the same priority takes a core away from them in the middle of a step, and every parallel
    region then waits for its slowest thread. At a lower priority the worker runs when a core is
    idle (between steps, in the step's serial parts) and still gets the whole CPU when the
    training loop waits for its batches, so it never starves. Samples do not depend on it.
    """
    del worker_id
    with contextlib.suppress(AttributeError, OSError):  # os.nice: not on Windows
        os.nice(niceness)


class SegDataModule(pl.LightningDataModule):
    """Train/validation data from a dataset root in nnU-Net v2 or MSD layout.

    Volumes are loaded, oriented (RAS), optionally resampled and intensity-normalised once with
    MONAI (:func:`segattn.data.transforms.preprocess_transforms`) and written to a preprocessed
    cache on disk (:mod:`segattn.training.cache`) that training reads through memory maps
    (``cache=False``: kept in memory instead); training samples are 2D slices along
    ``slice_axis`` or 3D patches, chosen by ``sampling``; validation uses whole volumes. Each
    training sample is a pure function of ``(seed, epoch, index)``
    (:mod:`segattn.training.sampling`), so worker count and resuming mid-epoch do not change the
    run. Every sample carries ``"annotated"``, a ``(K,)`` bool mask that is False
    for the structures ``dataset.json`` lists as not annotated in its case (``missing_labels``),
    which the loss and validation Dice then ignore (:mod:`segattn.training.partial_labels`).

    Args:
        root: dataset folder holding ``dataset.json``.
        mode: ``"2d"`` (slices) or ``"3d"`` (patches).
        slice_axis: 2D view: ``"coronal"`` (default, as in the scSE paper), ``"axial"``,
            ``"sagittal"`` or the axis index of the RAS-oriented volume.
        patch_size: crop size (2 values in 2D, 3 in 3D). 2D default: the whole slice, padded to
            the largest slice; 3D default ``[64, 64, 64]``.
        batch_size: samples per batch (3D: patches, ``samples_per_volume`` per volume).
        samples_per_volume: 3D patches drawn from each volume per visit.
        pos_fraction: ``sampling="foreground"`` in 3D: probability that a patch is centred on a
            foreground voxel.
        sampling: ``"foreground"`` (3D patches centred on foreground with probability
            ``pos_fraction``, 2D slices all equally often) or ``"classes"``: each patch centred
            on (2D: each slice containing) a voxel of a class drawn uniformly among the classes
            present in the case (:mod:`segattn.training.class_sampling`).
        sampling_random_fraction: ``sampling="classes"``: share of patches centred on a
            uniformly random voxel (2D: of uniformly drawn slices).
        val_fraction: share of cases held out for validation (ignored with ``splits_file``).
        seed: seed of the split and of the augmentation streams.
        splits_file: nnU-Net ``splits_final.json``; ``fold`` picks the split.
        fold: fold index in ``splits_file``.
        spacing: target voxel size in mm (``None`` keeps the native grid).
        intensity: ``{"kind": "zscore"}`` (MRI), ``{"kind": "ct", "window": [lo, hi]}``,
            ``{"kind": "ct_fitted"}`` (clip to the 0.5-99.5 percentiles of the training cases'
            foreground and z-score with its mean and std, fitted once from the training cases
            and stored in the checkpoint) or ``{"kind": "none"}``; default: ``ct`` with window
            -160..240 HU when channel 0 is named CT, else ``zscore``.
        augment: enable random augmentation.
        augmentation: overrides of :data:`segattn.training.augment.DEFAULT_AUGMENTATION`.
        num_workers: DataLoader workers (0 = load in the main process).
        worker_niceness: added to the training workers' CPU niceness (0 to 19; 0 leaves it), so
            that they run when the training step leaves a core idle
            (:func:`yield_cpu_to_training`).
        cache_workers: threads used to preprocess volumes.
        cache: keep preprocessed cases in a cache on disk (``False``: in memory).
        cache_dir: folder of the caches (one sub-folder per settings digest); default
            ``<root>.segattn-cache`` beside the dataset folder.
    """

    def __init__(
        self,
        root: str,
        mode: Literal["2d", "3d"] = "2d",
        slice_axis: str | int = "coronal",
        patch_size: list[int] | None = None,
        batch_size: int = 8,
        samples_per_volume: int = 2,
        pos_fraction: float = 0.67,
        sampling: Literal["foreground", "classes"] = "foreground",
        sampling_random_fraction: float = 0.2,
        val_fraction: float = 0.2,
        seed: int = 0,
        splits_file: str | None = None,
        fold: int = 0,
        spacing: list[float] | None = None,
        intensity: dict[str, Any] | None = None,
        augment: bool = True,
        augmentation: dict[str, Any] | None = None,
        num_workers: int = 0,
        worker_niceness: int = WORKER_NICENESS,
        cache_workers: int = 2,
        cache: bool = True,
        cache_dir: str | None = None,
    ) -> None:
        super().__init__()
        if mode not in ("2d", "3d"):
            raise ValueError(f"mode must be '2d' or '3d', got {mode!r}")
        if batch_size < 1 or samples_per_volume < 1:
            raise ValueError(
                "batch_size and samples_per_volume must be >= 1, "
                f"got {batch_size}, {samples_per_volume}"
            )
        if not 0.0 <= pos_fraction <= 1.0:
            raise ValueError(f"pos_fraction must be in [0, 1], got {pos_fraction}")
        check_sampling(sampling, sampling_random_fraction)
        self.sampling = sampling
        self.sampling_random_fraction = float(sampling_random_fraction)
        self.root = root
        self.mode = mode
        self.slice_axis = slice_axis_index(slice_axis) if mode == "2d" else None
        expected = 2 if mode == "2d" else 3
        if patch_size is not None and len(patch_size) != expected:
            raise ValueError(f"patch_size needs {expected} values in {mode} mode, got {patch_size}")
        if patch_size is None and mode == "3d":
            patch_size = [64, 64, 64]
        self.patch_size = list(patch_size) if patch_size is not None else None
        self.batch_size = batch_size
        self.samples_per_volume = samples_per_volume
        self.pos_fraction = pos_fraction
        self.val_fraction = val_fraction
        self.seed = seed
        self.splits_file = splits_file
        self.fold = fold
        self.spacing = spacing
        self.intensity = intensity
        self.augment = augment
        self.augmentation = augmentation_settings(augmentation)
        self.num_workers = num_workers
        if isinstance(worker_niceness, bool) or not 0 <= int(worker_niceness) <= 19:
            raise ValueError(f"worker_niceness must be 0 to 19, got {worker_niceness!r}")
        self.worker_niceness = int(worker_niceness)
        self.cache_workers = cache_workers
        self.cache = cache
        self.cache_dir = cache_dir
        self.train_cases: list[Case] = []
        self.val_cases: list[Case] = []
        self._train: Dataset | None = None
        self._train_weights: list[float] | None = None
        self._val: Dataset | None = None
        self._class_counts: torch.Tensor | None = None

    # -- metadata (read lazily from dataset.json; used by LightningCLI argument links) --
    @cached_property
    def dataset(self) -> DatasetInfo:
        return load_dataset(self.root)

    @property
    def spatial_dims(self) -> int:
        return 2 if self.mode == "2d" else 3

    @property
    def num_classes(self) -> int:
        return self.dataset.num_classes

    @property
    def in_channels(self) -> int:
        return self.dataset.in_channels

    @property
    def label_names(self) -> list[str]:
        return self.dataset.label_names

    @cached_property
    def preprocessing(self) -> dict[str, Any]:
        intensity = self.intensity
        if intensity is None:
            first = str(next(iter(self.dataset.channel_names.values()), "")).upper()
            is_ct = first == "CT" or first.startswith("CT")
            intensity = (
                {"kind": "ct", "window": list(DEFAULT_CT_WINDOW)} if is_ct else {"kind": "zscore"}
            )
        settings = normalize_preprocessing(
            {"orientation": "RAS", "spacing": self.spacing, "intensity": intensity}
        )
        fitted = settings["intensity"]
        if fitted["kind"] == "ct_fitted" and not is_fitted(fitted):
            settings["intensity"] = self._fit_ct_normalization(fitted["percentiles"])
        return settings

    def _fit_ct_normalization(self, percentiles: list[float]) -> dict[str, Any]:
        """Fit ``ct_fitted`` on the foreground of the training cases (on their own grids)."""
        train, _ = self._split()
        load = preprocess_transforms(
            {"orientation": None, "intensity": {"kind": "none"}}, keys=("image", "label")
        )

        def cases() -> Any:
            for case in train:
                item = load({"image": [str(p) for p in case.images], "label": str(case.label)})
                yield plain_tensor(item["image"]).numpy(), plain_tensor(item["label"]).numpy()

        intensity = fit_ct_normalization(cases(), percentiles, seed=self.seed)
        log.info("ct_fitted on %d training cases: %s", len(train), intensity)
        return intensity

    def _split(self) -> tuple[list[Case], list[Case]]:
        return split_cases(
            self.dataset.training,
            val_fraction=self.val_fraction,
            seed=self.seed,
            splits_file=self.splits_file,
            fold=self.fold,
        )

    @cached_property
    def missing_labels(self) -> dict[str, list[str]]:
        """Case -> structures not annotated in its label map (``dataset.json`` key
        ``missing_labels``; empty when absent)."""
        return read_missing_labels(self.dataset.root / DATASET_JSON)

    @property
    def inference_meta(self) -> dict[str, Any]:
        """What a checkpoint needs to repeat this preprocessing at inference (plain JSON types)."""
        return {
            "labels": dict(self.dataset.labels),
            "channel_names": dict(self.dataset.channel_names),
            "preprocessing": self.preprocessing,
            "mode": self.mode,
            "slice_axis": self.slice_axis,
            "patch_size": self.patch_size,
        }

    @cached_property
    def preprocessed_cache(self) -> PreprocessedCache:
        """The on-disk cache for these preprocessing settings."""
        root = self.cache_dir if self.cache_dir is not None else default_cache_root(self.root)
        return PreprocessedCache(root, self.preprocessing)

    def build_cache(self) -> int:
        """Preprocess every training case missing from the cache; returns how many."""
        return self.preprocessed_cache.build(
            self.dataset.training, self._preprocess_case, self.cache_workers
        )

    # -- Lightning hooks --
    def prepare_data(self) -> None:
        # Reading dataset.json validates the layout early, with a clear error.
        _ = self.dataset
        if self.cache:
            self.build_cache()  # once per node, before any rank reads it

    def setup(self, stage: str | None = None) -> None:
        if self._val is not None:
            return
        self.train_cases, self.val_cases = self._split()
        train: Sequence[tuple[torch.Tensor, torch.Tensor]]
        val: Sequence[tuple[torch.Tensor, torch.Tensor]]
        if self.cache:
            store = self.preprocessed_cache
            store.build([*self.train_cases, *self.val_cases], self._preprocess_case)
            train = store.volumes([c.name for c in self.train_cases])
            val = store.volumes([c.name for c in self.val_cases])
        else:
            train = self._load(self.train_cases)
            val = self._load(self.val_cases)
        names, missing = self.label_names, self.missing_labels
        train_annotated = annotated_masks([c.name for c in self.train_cases], names, missing)
        val_annotated = annotated_masks([c.name for c in self.val_cases], names, missing)
        self._val = VolumeDataset(val, [c.name for c in self.val_cases], val_annotated)
        if self.mode == "2d":
            assert self.slice_axis is not None
            patch = self.patch_size or _largest_slice(train, self.slice_axis)
            transform = random_transforms(2, patch, self.augmentation, self.augment)
            transform.set_random_state(seed=self.seed)
            self._train = SeededDataset(
                SliceDataset(train, self.slice_axis, transform, train_annotated), self.seed
            )
            self._train_weights = self._slice_weights(train)
        else:
            crop = None
            if self.sampling == "classes":
                assert self.patch_size is not None
                crop = RandClassBalancedCropd(
                    ["image", "label"],
                    "label",
                    self.patch_size,
                    num_samples=self.samples_per_volume,
                    random_fraction=self.sampling_random_fraction,
                )
            transform = random_transforms(
                3,
                self.patch_size,
                self.augmentation,
                self.augment,
                pos_fraction=self.pos_fraction,
                num_samples=self.samples_per_volume,
                crop=crop,
            )
            transform.set_random_state(seed=self.seed)
            self._train = SeededDataset(PatchDataset(train, transform, train_annotated), self.seed)
        log.info("%d training and %d validation cases", len(self.train_cases), len(self.val_cases))

    def _load(self, cases: Sequence[Case]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        if not cases:
            return []
        items = [{"image": [str(p) for p in c.images], "label": str(c.label)} for c in cases]
        ds = CacheDataset(
            items,
            transform=preprocess_transforms(self.preprocessing, keys=("image", "label")),
            cache_rate=1.0,
            num_workers=self.cache_workers,
            progress=False,
        )
        return [self._checked(case, item) for case, item in zip(cases, ds)]  # type: ignore[call-overload]

    def _preprocess_case(self, case: Case) -> tuple[torch.Tensor, torch.Tensor]:
        transform = preprocess_transforms(self.preprocessing, keys=("image", "label"))
        item = transform({"image": [str(p) for p in case.images], "label": str(case.label)})
        return self._checked(case, item)

    def _checked(self, case: Case, item: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """Plain ``(image float32, label uint8)`` of a preprocessed item, grids checked."""
        image = plain_tensor(item["image"]).float().contiguous()
        label = plain_tensor(item["label"]).round().to(torch.uint8).contiguous()
        if image.shape[1:] != label.shape[1:]:
            raise SegattnError(
                f"{case.label}: label grid {tuple(label.shape[1:])} differs from image grid "
                f"{tuple(image.shape[1:])} after preprocessing"
            )
        if image.shape[0] != self.in_channels:
            raise SegattnError(
                f"{case.images[0]}: {image.shape[0]} channels, "
                f"dataset.json declares {self.in_channels}"
            )
        return image, label

    def _slice_weights(
        self, volumes: Sequence[tuple[torch.Tensor, torch.Tensor]]
    ) -> list[float] | None:
        """2D ``sampling="classes"``: class-balanced slice weights; an epoch then draws as many
        slices as there are, with replacement, from ``(seed, epoch)``
        (:class:`segattn.training.sampling.EpochSampler`)."""
        if self.sampling != "classes" or not volumes:
            return None
        assert self.slice_axis is not None
        weights = class_balanced_slice_weights(
            [label for _, label in volumes], self.slice_axis, self.sampling_random_fraction
        )
        return [float(w) for w in weights.tolist()]

    def train_dataloader(self) -> ResumableDataLoader:
        if self._train is None:
            self.setup("fit")
        assert self._train is not None
        return ResumableDataLoader(
            self._train,
            batch_size=self.batch_size
            if self.mode == "2d"
            else max(1, self.batch_size // self.samples_per_volume),
            seed=self.seed,
            weights=self._train_weights,
            progress=self._progress,
            num_workers=self.num_workers,
            collate_fn=list_data_collate,
            persistent_workers=self.num_workers > 0,
            worker_init_fn=functools.partial(yield_cpu_to_training, niceness=self.worker_niceness)
            if self.worker_niceness
            else None,
        )

    def _progress(self) -> tuple[int, int]:
        """``(epoch, batches of it trained)`` of the next batch the attached trainer trains."""
        trainer = self.trainer
        if trainer is None:
            return 0, 0
        return next_batch_position(trainer)

    def class_voxel_counts(self) -> torch.Tensor:
        """``(K,)`` int64 voxels of every class over the training cases after preprocessing
        (computed once; e.g. for median-frequency class weights)."""
        if self._class_counts is None:
            if self._train is None:
                self.setup("fit")
            volumes = getattr(self._train, "volumes", [])
            self._class_counts = class_voxel_counts(volumes, self.num_classes)
        return self._class_counts.clone()

    def val_dataloader(self) -> MonaiDataLoader:
        if self._val is None:
            self.setup("validate")
        val: Any = self._val
        return MonaiDataLoader(val, batch_size=1, shuffle=False, num_workers=0)


def _largest_slice(volumes: Sequence[tuple[torch.Tensor, torch.Tensor]], axis: int) -> list[int]:
    sizes = [[s for d, s in enumerate(img.shape[1:]) if d != axis] for img, _ in volumes]
    if not sizes:
        raise SegattnError("no training cases")
    return [max(s[0] for s in sizes), max(s[1] for s in sizes)]


def class_voxel_counts(
    volumes: Sequence[tuple[torch.Tensor, torch.Tensor]], num_classes: int
) -> torch.Tensor:
    """``(K,)`` int64 voxels of every class over ``(image, label)`` pairs."""
    counts = torch.zeros(num_classes, dtype=torch.int64)
    for _, label in volumes:
        found = torch.bincount(label.reshape(-1).long(), minlength=num_classes)
        counts += found[:num_classes]
    return counts
