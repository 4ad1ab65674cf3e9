"""Predictor: checkpoint(s) + scans -> integer label maps on the scans' own grids.

Scans are NIfTI, NRRD, MetaImage files or DICOM series folders (:mod:`segattn.imageio`); all are
seen as NIfTI-style images with a RAS+ affine, so the same scan in any format gives the same labels.

Each scan goes through the checkpoint's MONAI preprocessing (load, channel-first, orient,
optionally resample, normalise); the network runs slice by slice along the trained axis (2D) or
with Gaussian-weighted sliding windows (3D); class probabilities are mapped back to the input grid
and the labels are written with the input's header geometry. Several checkpoints (e.g. three 2D
views, see :mod:`segattn.inference.ensemble`) are ensembled by a weighted average of their class
probabilities.

Two methods give the same labels (equal up to float rounding, see the tests):

- ``"slabs"`` (default, bounded memory): the volume is predicted slab by slab with exactly the
  windows and weights of the whole-volume method, probabilities are resampled back slab by slab,
  and labels are written straight into the input grid (:mod:`segattn.inference.engine`). Working
  buffers stay within ``max_memory`` except for the documented mixed-view ensemble accumulator.
- ``"whole"``: MONAI's whole-volume ``sliding_window_inference`` and ``Invertd`` (float32
  ``(K, *volume)`` logits plus a count map: > 8 GB for a 512 x 512 x 400 CT with 20 classes); the
  reference the slab method is tested and benchmarked against.

Example::

    predictor = Predictor("model.ckpt", device="cpu", progress=False)
    labels, img = predictor.predict_image("imagesTs/CASE_0000.nii.gz")
    labels.shape   # the input's (X, Y, Z); img carries the input's affine and header
    report = predictor.predict_files(["imagesTs/"], "predictions/")
    views = Predictor(["sag.ckpt", "cor.ckpt", "ax.ckpt"], weights="quicknat")
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import Compose, Invertd
from torch import Tensor, nn
from tqdm import tqdm

from segattn.data.transforms import plain_tensor, preprocess_transforms
from segattn.errors import InputFileError, SegattnError
from segattn.imageio import (
    Scan,
    label_dtype,
    label_image,
    read_channels,
    read_scan,
    write_dicom_seg,
    write_image,
    write_label_files,
)
from segattn.inference.checkpoint import CheckpointInfo, load_checkpoint
from segattn.inference.engine import GB, Member, ProbabilitySum, Settings, group_slabs
from segattn.inference.ensemble import check_compatible, resolve_weights
from segattn.inference.inputs import InputCase, collect_cases
from segattn.inference.preprocess import run_preprocessing
from segattn.inference.regrid import Geometry
from segattn.inference.volume import predict_volume

log = logging.getLogger(__name__)

PathLike = str | Path
ScanLike = str | Path | Scan  # a path, or a scan already opened by segattn.imageio.read_scan
_Opened = list[nib.Nifti1Image] | None  # scans already in memory, or None: the chain loads files
METHODS = ("slabs", "whole")


@dataclass(frozen=True)
class CaseResult:
    """Outcome of one case of :meth:`Predictor.predict_files`.

    Attributes:
        input: the case's (channel-0) input file, or the missing path / empty folder.
        output: the written label map, None on failure.
        error: the one-line message (starting with the offending path), None on success.
    """

    input: Path
    output: Path | None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class _Model:
    info: CheckpointInfo
    net: nn.Module
    weight: float


class Predictor:
    """Segment NIfTI scans with one checkpoint, or a weighted ensemble of checkpoints.

    Args:
        checkpoint: a ``.ckpt`` path, or several whose class probabilities are averaged (they
            must share labels and input channels; 2D views and 3D models may be mixed).
        device: ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        sw_batch_size: sliding windows (3D) or slices (2D) per forward pass. 2D models run on
            whole slices (as in validation), whatever their training crop size.
        overlap: sliding-window overlap fraction in [0, 1).
        progress: show a progress bar over cases on stderr in :meth:`predict_files`.
        weights: None (equal), one positive number per checkpoint (normalised to sum 1), or a
            preset name such as ``"quicknat"`` (see :mod:`segattn.inference.ensemble`).
        max_memory: budget in GB for the working buffers of the ``"slabs"`` method (sliding-window
            and resampling buffers, ensemble accumulators); the image, the output labels and the
            network's activations come on top.
        method: ``"slabs"`` (bounded memory, default) or ``"whole"`` (MONAI whole-volume
            reference).

    Raises:
        InputFileError: a checkpoint is missing, unreadable, unsafe or inconsistent, or two
            checkpoints cannot be ensembled (the message names both).
        SegattnError: CUDA requested but not available; bad ``weights``.
        ValueError: bad ``device``, ``sw_batch_size``, ``overlap``, ``max_memory`` or ``method``.
    """

    def __init__(
        self,
        checkpoint: PathLike | Sequence[PathLike],
        device: str = "auto",
        sw_batch_size: int = 4,
        overlap: float = 0.5,
        progress: bool = True,
        weights: str | Sequence[float] | None = None,
        max_memory: float = 1.0,
        method: str = "slabs",
    ) -> None:
        paths = [checkpoint] if isinstance(checkpoint, str | Path) else list(checkpoint)
        if not paths:
            raise ValueError("at least one checkpoint is needed")
        if int(sw_batch_size) < 1:
            raise ValueError(f"sw_batch_size must be >= 1, got {sw_batch_size}")
        if not 0.0 <= float(overlap) < 1.0:
            raise ValueError(f"overlap must be in [0, 1), got {overlap}")
        if not (math.isfinite(float(max_memory)) and float(max_memory) > 0):
            raise ValueError(f"max_memory must be a positive number of GB, got {max_memory}")
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        self.device = _resolve_device(device)
        self.sw_batch_size = int(sw_batch_size)
        self.overlap = float(overlap)
        self.progress = progress
        self.method = method
        self.max_memory = float(max_memory)
        infos = [load_checkpoint(p) for p in paths]
        check_compatible(infos)
        self.weights = resolve_weights(infos, weights)
        self.models = [
            _Model(info, info.build_net().to(self.device), w)
            for info, w in zip(infos, self.weights, strict=True)
        ]
        # one preprocessing chain per distinct setting, shared by the models that use it
        self._chains: dict[str, Compose] = {}
        for info in infos:
            key = _settings_key(info.preprocessing)
            if key not in self._chains:
                self._chains[key] = preprocess_transforms(info.preprocessing, keys=("image",))

    @property
    def labels(self) -> dict[str, int]:
        """Structure name -> class index (0 is background), as stored in the checkpoint."""
        return dict(self.models[0].info.labels)

    @property
    def num_classes(self) -> int:
        return len(self.models[0].info.labels)

    @property
    def in_channels(self) -> int:
        return self.models[0].info.in_channels

    def predict_probabilities(
        self, image: ScanLike | Sequence[ScanLike], series: str | None = None
    ) -> tuple[np.ndarray, nib.Nifti1Image]:
        """Class probabilities of one scan on its own voxel grid (weighted ensemble average).

        This returns ``num_classes`` float32 volumes, so it needs ``4 * K * X * Y * Z`` bytes
        whatever the method; :meth:`predict_image` does not.

        Args:
            image: one scan (3D, or 4D with ``in_channels`` volumes; a file or a DICOM series
                folder) or the channel scans in channel order.
            series: SeriesInstanceUID to pick in DICOM folders holding several series.

        Returns:
            float32 ``(num_classes, X, Y, Z)`` probabilities and the (lazily loaded) input image
            whose grid they are on.

        Raises:
            InputFileError: unreadable file, wrong channel count, NaN/inf voxels, grid mismatch
                between channel files.
        """
        paths, reference, opened = self._check_inputs(image, series)
        with torch.inference_mode():
            if self.method == "whole":
                total = self._whole_probabilities(paths, opened)
            else:
                total = self._accumulate(paths, opened, math.inf).values
        _check_grid(total, reference, paths[0])
        return total.numpy().astype(np.float32, copy=False), reference

    def predict_image(
        self, image: ScanLike | Sequence[ScanLike], series: str | None = None
    ) -> tuple[np.ndarray, nib.Nifti1Image]:
        """Label map of one scan on its own voxel grid.

        Args:
            image: one scan (3D, or 4D with ``in_channels`` volumes; a file or a DICOM series
                folder) or the channel scans in channel order.
            series: SeriesInstanceUID to pick in DICOM folders holding several series.

        Returns:
            the integer labels ``(X, Y, Z)`` (uint8, or int16 past 256 classes) and a NIfTI
            image holding them with the input's affine and header geometry (not yet saved).

        Raises:
            InputFileError: as :meth:`predict_probabilities`.
        """
        paths, reference, opened = self._check_inputs(image, series)
        with torch.inference_mode():
            if self.method == "whole":
                label_np = self._whole_labels(paths, opened)
            elif len(self._chains) == 1:
                label_np = self._slab_labels(paths, opened)
            else:  # models with different preprocessing meet on the input grid
                total = self._accumulate(paths, opened, self.max_memory * GB)
                label_np = _argmax(total.values, self.num_classes)
        _check_grid(torch.from_numpy(label_np)[None], reference, paths[0])
        img = label_image(label_np, reference, self.num_classes)
        return np.asanyarray(img.dataobj), img

    def predict_files(
        self,
        inputs: Iterable[PathLike],
        output_dir: PathLike,
        overwrite: bool = False,
        series: str | None = None,
        output_format: str = "same",
    ) -> list[CaseResult]:
        """Predict files and folders, writing ``output_dir/<case><ending>`` atomically.

        Inputs are found by :func:`segattn.imageio.discover_inputs`: image files, DICOM series
        folders and folders of those (sorted); nnU-Net's ``_0000`` suffix is dropped from output
        names (``CASE_0000.nii.gz`` -> ``CASE.nii.gz``). ``output_format`` is ``"same"`` (the
        input's format; NIfTI for DICOM series), ``"nifti"``, ``"nrrd"``, ``"mha"`` or
        ``"dicom-seg"`` (DICOM series inputs only); the label map keeps the input's geometry. The
        label names are written once into ``output_dir`` for ITK-SNAP and 3D Slicer
        (:func:`segattn.imageio.write_label_files`). Existing outputs are refused before
        anything is computed unless ``overwrite``. A bad input is reported (nothing written for
        it) and the others are still processed.

        Returns:
            one :class:`CaseResult` per case or failed input: problems found while collecting
            inputs first, then the cases in input order.
        """
        out_dir = Path(output_dir)
        if out_dir.exists() and not out_dir.is_dir():
            raise InputFileError(out_dir, "output exists and is not a folder")
        cases, problems = collect_cases(inputs, self.in_channels, series, output_format)
        results = [CaseResult(p.source, None, p.error) for p in problems]
        todo: list[InputCase] = []
        for case in cases:
            target = out_dir / case.output_name
            if target.exists() and not overwrite:
                msg = f"{target}: output already exists (use --overwrite to replace it)"
                results.append(CaseResult(case.source, None, msg))
            else:
                todo.append(case)
        if todo:
            out_dir.mkdir(parents=True, exist_ok=True)
        bar = tqdm(todo, desc="predict", unit="case", disable=not self.progress, file=sys.stderr)
        for case in bar:
            bar.set_postfix_str(case.name)
            target = out_dir / case.output_name
            try:
                self._predict_case(case, target, output_format)
            except SegattnError as err:
                log.info("failed %s: %s", case.source, err)
                results.append(CaseResult(case.source, None, str(err)))
                continue
            results.append(CaseResult(case.source, target))
        if any(r.ok for r in results):
            write_label_files(out_dir, self.labels)
        return results

    def _predict_case(self, case: InputCase, target: Path, output_format: str) -> None:
        scans = [read_scan(p, case.series) for p in case.images]
        if output_format == "dicom-seg" and scans[0].format != "dicom":
            raise InputFileError(case.source, "--output-format dicom-seg needs a DICOM series")
        labels, img = self.predict_image(scans)
        if output_format == "dicom-seg":
            write_dicom_seg(labels, scans[0].slices, self.labels, target)
        else:
            write_image(img, target)

    # -- bounded-memory method ---------------------------------------------------------------

    def _settings(self) -> Settings:
        return Settings(self.sw_batch_size, self.overlap, int(self.max_memory * GB))

    def _members(self, key: str) -> list[Member]:
        return [Member(m.info, self._logits_fn(m), m.weight) for m in self._models_for(key)]

    def _slab_labels(self, paths: list[Path], opened: _Opened) -> np.ndarray:
        [(key, chain)] = self._chains.items()
        data = run_preprocessing(chain, paths, opened)
        image = self._model_input(data)
        geometry = Geometry.of(data["image"])
        del data
        labels = np.empty(geometry.input_shape, dtype=label_dtype(self.num_classes))
        for box, probs in group_slabs(self._members(key), image, geometry, self._settings()):
            index, part = geometry.to_input(box, probs.argmax(0))
            labels[index] = part.cpu().numpy()
        return labels

    def _accumulate(self, paths: list[Path], opened: _Opened, budget: float) -> ProbabilitySum:
        """Weighted probabilities of all models on the input grid, ``(K, X, Y, Z)``."""
        total: ProbabilitySum | None = None
        for key, chain in self._chains.items():
            data = run_preprocessing(chain, paths, opened)
            image = self._model_input(data)
            geometry = Geometry.of(data["image"])
            del data
            if total is None:
                shape = (self.num_classes, *geometry.input_shape)
                total = ProbabilitySum(shape, budget, "ensemble of differently preprocessed models")
            for box, probs in group_slabs(self._members(key), image, geometry, self._settings()):
                index, part = geometry.to_input(box, probs)
                total.add(index, part)
            del image
        assert total is not None
        return total

    def _model_input(self, data: dict[str, Any]) -> Tensor:
        return plain_tensor(data["image"]).float().to(self.device)

    def _logits_fn(self, model: _Model) -> Any:
        amp = self.device.type == "cuda"

        def net(t: Tensor) -> Tensor:
            with torch.autocast("cuda", dtype=torch.float16) if amp else contextlib.nullcontext():
                out = model.net(t)
            return out[0] if isinstance(out, list | tuple) else out

        return net

    # -- whole-volume reference method -------------------------------------------------------

    def _whole_probabilities(self, paths: list[Path], opened: _Opened) -> Tensor:
        total: Tensor | None = None
        for key, chain in self._chains.items():
            data = run_preprocessing(chain, paths, opened)
            for model in self._models_for(key):
                probs = self._run(model, data["image"])
                probs = self._to_input_grid(chain, data, probs, True) * model.weight
                total = probs if total is None else total + probs
        assert total is not None
        return total

    def _whole_labels(self, paths: list[Path], opened: _Opened) -> np.ndarray:
        chain = next(iter(self._chains.values()))
        if len(self.models) == 1 and not _resamples(self.models[0].info):
            # only the orientation changed: argmax first, then flip/permute the label map back
            data = run_preprocessing(chain, paths, opened)
            logits = self._run(self.models[0], data["image"], softmax=False)
            labels = logits.argmax(0, keepdim=True).to(torch.uint8)
            del logits
            return self._to_input_grid(chain, data, labels, False)[0].numpy()
        return _argmax(self._whole_probabilities(paths, opened), self.num_classes)

    def _run(self, model: _Model, image: Tensor, softmax: bool = True) -> Tensor:
        """Class probabilities (or logits) ``(K, *spatial)`` on the preprocessed grid, float32
        on the CPU, from :func:`segattn.inference.volume.predict_volume` (as in validation)."""
        info = model.info
        logits = predict_volume(
            self._logits_fn(model),
            self._model_input({"image": image}),
            mode=info.mode,
            slice_axis=info.slice_axis,
            patch_size=info.patch_size if info.mode == "3d" else None,
            slice_batch=self.sw_batch_size,
            sw_batch_size=self.sw_batch_size,
            overlap=self.overlap,
        )
        out = torch.softmax(logits.float(), dim=0) if softmax else logits.float()
        return out.cpu()

    def _to_input_grid(
        self, chain: Compose, data: dict[str, Any], pred: Tensor, interpolate: bool
    ) -> Tensor:
        """Invert the chain's spatial steps on ``pred`` ``(K, *preprocessed)``."""
        image = data["image"]
        if not image.applied_operations:  # no orientation/spacing step: already the input grid
            return pred
        meta_pred = MetaTensor(
            pred, meta=dict(image.meta), applied_operations=list(image.applied_operations)
        )
        inverse = Invertd(
            keys="pred", transform=chain, orig_keys="image", nearest_interp=not interpolate
        )
        out = inverse({"image": image, "pred": meta_pred})["pred"]
        return plain_tensor(out)

    # -- shared steps ------------------------------------------------------------------------

    def _models_for(self, key: str) -> list[_Model]:
        return [m for m in self.models if _settings_key(m.info.preprocessing) == key]

    def _check_inputs(
        self, image: ScanLike | Sequence[ScanLike], series: str | None = None
    ) -> tuple[list[Path], nib.Nifti1Image, _Opened]:
        scans = read_channels(image, self.in_channels, series)
        imgs = [s.image for s in scans]
        # NIfTI files are loaded by the chain itself; scans read into memory are handed over
        opened = None if all(s.format == "nifti" for s in scans) else imgs
        return [s.path for s in scans], imgs[0], opened


def _argmax(probs: Tensor, num_classes: int, rows: int = 8) -> np.ndarray:
    """``probs.argmax(0)`` as uint8/int16, computed a few rows at a time (no int64 volume)."""
    out = np.empty(tuple(probs.shape[1:]), dtype=label_dtype(num_classes))
    for i in range(0, probs.shape[1], rows):
        out[i : i + rows] = probs[:, i : i + rows].argmax(0).numpy()
    return out


def _resolve_device(device: str) -> torch.device:
    name = str(device).lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name != "cpu" and not name.startswith("cuda"):
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda[:N]', got {device!r}")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise SegattnError(f"device {device!r} requested but CUDA is not available")
    return torch.device(name)


def _resamples(info: CheckpointInfo) -> bool:
    return info.preprocessing.get("spacing") is not None


def _settings_key(settings: dict[str, Any]) -> str:
    return json.dumps(settings, sort_keys=True)


def _check_grid(pred: Tensor, reference: nib.Nifti1Image, path: Path) -> None:
    if tuple(pred.shape[1:]) != tuple(reference.shape[:3]):
        raise RuntimeError(
            f"{path}: inverse transform gave grid {tuple(pred.shape[1:])}, "
            f"expected {reference.shape[:3]}"
        )


def _root(err: BaseException) -> str:
    while err.__cause__ is not None:
        err = err.__cause__
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
