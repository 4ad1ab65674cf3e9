"""Preprocessed cases on disk, read slice by slice or patch by patch through memory maps.

The first ``fit`` (or ``segattn preprocess``) writes every case after orientation, resampling
and intensity normalisation to ``CACHE_ROOT/<digest>/``, where ``<digest>`` hashes the
preprocessing settings, so a changed setting starts a new cache. Per case::

    CASE.image.npy   float32 (C, X, Y, Z)
    CASE.label.npy   uint8   (1, X, Y, Z)
    CASE.done.json   completion marker: shapes and the size/mtime of the source files

Each ``.npy`` is written to a temporary file, synced and renamed; the marker is written last. An
entry without a marker (a kill mid-write) or whose source files changed is written again.

Datasets open the maps per sample (``np.load(mmap_mode="c")``) and drop them once the sample is
built, so the resident memory of training depends on the batch and patch, not on the number of
cases: the kernel pages in only what a sample reads, and pages of closed maps leave the process.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from segattn.data.layout import Case
from segattn.data.transforms import normalize_preprocessing
from segattn.errors import SegattnError
from segattn.fileio import atomic_path, write_text_atomic

log = logging.getLogger(__name__)

CACHE_FORMAT_VERSION = 1
_STALE_TMP_SECONDS = 3600.0

Volume = tuple[torch.Tensor, torch.Tensor]


def cache_digest(preprocessing: dict[str, Any]) -> str:
    """16 hex digits identifying the preprocessing settings (and the cache format)."""
    payload = {
        "format": CACHE_FORMAT_VERSION,
        "preprocessing": normalize_preprocessing(preprocessing),
    }
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def default_cache_root(dataset_root: str | Path) -> Path:
    """``<dataset folder>.segattn-cache`` beside the dataset folder."""
    root = Path(dataset_root).resolve()
    return root.with_name(f"{root.name}.segattn-cache")


def _source_signature(case: Case) -> list[list[Any]]:
    if case.label is None:
        raise SegattnError(f"{case.images[0]}: training case {case.name} has no label file")
    files = [*case.images, case.label]
    out = []
    for path in files:
        stat = Path(path).stat()
        out.append([Path(path).name, stat.st_size, stat.st_mtime_ns])
    return out


def _save_npy_atomic(array: np.ndarray, path: Path) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.save(handle, array, allow_pickle=False)
        handle.flush()
        os.fsync(handle.fileno())


class PreprocessedCache:
    """One cache folder for one set of preprocessing settings.

    Args:
        cache_root: folder holding one sub-folder per settings digest.
        preprocessing: the settings (see :mod:`segattn.data.transforms`).

    Example:
        >>> cache = PreprocessedCache("/tmp/ds.segattn-cache", {"spacing": None})
        >>> cache.folder.name == cache_digest({"spacing": None})
        True
    """

    def __init__(self, cache_root: str | Path, preprocessing: dict[str, Any]) -> None:
        self.preprocessing = normalize_preprocessing(preprocessing)
        self.digest = cache_digest(self.preprocessing)
        self.folder = Path(cache_root) / self.digest

    def paths(self, name: str) -> tuple[Path, Path, Path]:
        """``(image .npy, label .npy, marker)`` of case ``name``."""
        base = self.folder / name
        return (
            base.with_name(f"{name}.image.npy"),
            base.with_name(f"{name}.label.npy"),
            base.with_name(f"{name}.done.json"),
        )

    def is_complete(self, case: Case) -> bool:
        """Marker present, source files unchanged and both arrays readable with its shapes."""
        image_path, label_path, marker = self.paths(case.name)
        try:
            info = json.loads(marker.read_text(encoding="utf-8"))
            if info.get("sources") != _source_signature(case):
                return False
            image = np.load(image_path, mmap_mode="r")
            label = np.load(label_path, mmap_mode="r")
        except (OSError, ValueError):
            return False
        return list(image.shape) == info.get("image_shape") and list(label.shape) == info.get(
            "label_shape"
        )

    def write(self, case: Case, image: torch.Tensor, label: torch.Tensor) -> None:
        """Store one preprocessed case: ``image (C, X, Y, Z)`` float, ``label (1, X, Y, Z)``."""
        image_path, label_path, marker = self.paths(case.name)
        self.folder.mkdir(parents=True, exist_ok=True)
        marker.unlink(missing_ok=True)  # the entry is incomplete from here until the end
        image_np = image.detach().cpu().numpy().astype(np.float32, copy=False)
        label_np = label.detach().cpu().numpy().astype(np.uint8, copy=False)
        _save_npy_atomic(np.ascontiguousarray(image_np), image_path)
        _save_npy_atomic(np.ascontiguousarray(label_np), label_path)
        info = {
            "case": case.name,
            "sources": _source_signature(case),
            "image_shape": list(image_np.shape),
            "label_shape": list(label_np.shape),
        }
        write_text_atomic(marker, json.dumps(info, indent=1) + "\n")

    def build(
        self,
        cases: Sequence[Case],
        preprocess: Callable[[Case], Volume],
        workers: int = 1,
    ) -> int:
        """Write every case of ``cases`` that is not complete; returns how many were written.

        Raises:
            SegattnError: the cache folder cannot be created (pass another ``cache_dir``).
        """
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise SegattnError(
                f"{self.folder}: cannot create the preprocessed cache ({err.strerror}); "
                "choose another folder with --data.cache_dir"
            ) from err
        settings = self.folder / "settings.json"
        if not settings.exists():
            text = json.dumps({"preprocessing": self.preprocessing}, indent=1) + "\n"
            write_text_atomic(settings, text)
        self._remove_stale_temporaries()
        todo = [c for c in cases if not self.is_complete(c)]

        def one(case: Case) -> None:
            image, label = preprocess(case)
            self.write(case, image, label)

        if workers > 1 and len(todo) > 1:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                list(pool.map(one, todo))
        else:
            for case in todo:
                one(case)
        if todo:
            log.info("preprocessed %d case(s) into %s", len(todo), self.folder)
        return len(todo)

    def _remove_stale_temporaries(self) -> None:
        # leftovers of killed writers; recent ones may belong to a writer on another node
        now = time.time()
        for tmp in self.folder.glob(".tmp-*"):
            with contextlib.suppress(OSError):
                if now - tmp.stat().st_mtime > _STALE_TMP_SECONDS:
                    tmp.unlink()

    def volumes(self, names: Sequence[str]) -> CachedVolumes:
        """The cases ``names`` as a lazy sequence of ``(image, label)`` tensors."""
        return CachedVolumes(self.folder, names)


class CachedVolumes(Sequence[Volume]):
    """``(image (C, X, Y, Z) float32, label (1, X, Y, Z) uint8)`` per case, opened on access.

    Each access maps the two ``.npy`` files copy-on-write; the tensors share memory with the
    maps, which close when the tensors are released. Pickles as paths (DataLoader workers).
    """

    def __init__(self, folder: str | Path, names: Sequence[str]) -> None:
        self.folder = Path(folder)
        self.names = list(names)

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, v: int) -> Volume:  # type: ignore[override]
        name = self.names[v]
        image = np.load(self.folder / f"{name}.image.npy", mmap_mode="c")
        label = np.load(self.folder / f"{name}.label.npy", mmap_mode="c")
        return torch.from_numpy(image), torch.from_numpy(label)


class VolumeDataset(Dataset):
    """Whole volumes for validation: ``{"image", "label", "case"}`` per item, plus
    ``"annotated"`` (the case's ``(K,)`` mask, :mod:`segattn.training.partial_labels`) when
    ``annotated`` is given.

    Args:
        volumes: ``(image, label)`` pairs (a list in memory or :class:`CachedVolumes`).
        names: case names in the same order.
        annotated: per case, the ``(K,)`` bool mask of annotated classes, or None.
    """

    def __init__(
        self,
        volumes: Sequence[Volume],
        names: Sequence[str],
        annotated: Sequence[torch.Tensor] | None = None,
    ) -> None:
        if len(volumes) != len(names):
            raise ValueError(f"{len(volumes)} volumes but {len(names)} names")
        if annotated is not None and len(annotated) != len(names):
            raise ValueError(f"{len(annotated)} annotated masks but {len(names)} names")
        self.volumes = volumes
        self.names = list(names)
        self.annotated = None if annotated is None else list(annotated)

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, i: int) -> dict[str, Any]:
        image, label = self.volumes[i]
        item: dict[str, Any] = {"image": image, "label": label, "case": self.names[i]}
        if self.annotated is not None:
            item["annotated"] = self.annotated[i]
        return item
