"""Predictor: checkpoint(s) + NIfTI scans -> integer label maps on the scans' own grids.

Each scan goes through the checkpoint's MONAI preprocessing (load, channel-first, orient,
optionally resample, normalise); the network runs slice by slice along the trained axis (2D) or
with Gaussian-weighted sliding windows (3D); class probabilities (or, when only the orientation
changed, the label map) are mapped back with MONAI's inverse transforms; and the labels are written
with the input's header geometry. Several checkpoints (e.g. three 2D views) are ensembled by
averaging their class probabilities on the input grid.

Example::

    predictor = Predictor("model.ckpt", device="cpu", progress=False)
    labels, img = predictor.predict_image("imagesTs/CASE_0000.nii.gz")
    labels.shape   # the input's (X, Y, Z); img carries the input's affine and header
    report = predictor.predict_files(["imagesTs/"], "predictions/")
"""

from __future__ import annotations

import contextlib
import json
import logging
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
from segattn.fileio import save_nifti_atomic
from segattn.inference.checkpoint import CheckpointInfo, load_checkpoint
from segattn.inference.inputs import InputCase, collect_cases
from segattn.inference.io import channel_count, label_image, load_nifti_header
from segattn.inference.volume import predict_volume

log = logging.getLogger(__name__)

PathLike = str | Path


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


class Predictor:
    """Segment NIfTI scans with one checkpoint, or an ensemble of checkpoints.

    Args:
        checkpoint: a ``.ckpt`` path, or several whose class probabilities are averaged (they
            must share labels and channels).
        device: ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        sw_batch_size: sliding windows (3D) or slices (2D) per forward pass. 2D models run on
            whole slices (as in validation), whatever their training crop size.
        overlap: sliding-window overlap fraction in [0, 1).
        progress: show a progress bar over cases on stderr in :meth:`predict_files`.

    Raises:
        InputFileError: a checkpoint is missing, unreadable, unsafe or inconsistent.
        SegattnError: CUDA requested but not available.
        ValueError: bad ``device``, ``sw_batch_size`` or ``overlap``.
    """

    def __init__(
        self,
        checkpoint: PathLike | Sequence[PathLike],
        device: str = "auto",
        sw_batch_size: int = 4,
        overlap: float = 0.5,
        progress: bool = True,
    ) -> None:
        paths = [checkpoint] if isinstance(checkpoint, str | Path) else list(checkpoint)
        if not paths:
            raise ValueError("at least one checkpoint is needed")
        if int(sw_batch_size) < 1:
            raise ValueError(f"sw_batch_size must be >= 1, got {sw_batch_size}")
        if not 0.0 <= float(overlap) < 1.0:
            raise ValueError(f"overlap must be in [0, 1), got {overlap}")
        self.device = _resolve_device(device)
        self.sw_batch_size = int(sw_batch_size)
        self.overlap = float(overlap)
        self.progress = progress
        infos = [load_checkpoint(p) for p in paths]
        first = infos[0]
        for other in infos[1:]:
            if other.labels != first.labels:
                raise InputFileError(
                    other.path, f"labels differ from {first.path}; cannot ensemble them"
                )
            if other.in_channels != first.in_channels:
                raise InputFileError(
                    other.path,
                    f"takes {other.in_channels} channels but {first.path} takes "
                    f"{first.in_channels}; cannot ensemble them",
                )
        self.models = [_Model(info, info.build_net().to(self.device)) for info in infos]
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
        self, image: PathLike | Sequence[PathLike]
    ) -> tuple[np.ndarray, nib.Nifti1Image]:
        """Class probabilities of one scan on its own voxel grid.

        Args:
            image: one file (3D, or 4D with ``in_channels`` volumes) or the channel files in
                channel order.

        Returns:
            float32 ``(num_classes, X, Y, Z)`` probabilities and the (lazily loaded) input image
            whose grid they are on.

        Raises:
            InputFileError: unreadable file, wrong channel count, NaN/inf voxels, grid mismatch
                between channel files.
        """
        paths, reference = self._check_inputs(image)
        total: Tensor | None = None
        for key, chain in self._chains.items():
            data = self._preprocess(chain, paths)
            for model in self._models_for(key):
                probs = self._to_input_grid(chain, data, self._run(model, data["image"]), True)
                total = probs if total is None else total + probs
        assert total is not None
        total = total / len(self.models)
        _check_grid(total, reference, paths[0])
        return total.numpy().astype(np.float32, copy=False), reference

    def predict_image(
        self, image: PathLike | Sequence[PathLike]
    ) -> tuple[np.ndarray, nib.Nifti1Image]:
        """Label map of one scan on its own voxel grid.

        Args:
            image: one file (3D, or 4D with ``in_channels`` volumes) or the channel files in
                channel order.

        Returns:
            the integer labels ``(X, Y, Z)`` (uint8, or int16 past 256 classes) and a NIfTI
            image holding them with the input's affine and header geometry (not yet saved).

        Raises:
            InputFileError: as :meth:`predict_probabilities`.
        """
        paths, reference = self._check_inputs(image)
        chain = next(iter(self._chains.values()))
        single = len(self.models) == 1 and not _resamples(self.models[0].info)
        if single:
            # only the orientation changed: argmax first, then flip/permute the label map back
            data = self._preprocess(chain, paths)
            probs = self._run(self.models[0], data["image"])
            labels = self._to_input_grid(chain, data, probs.argmax(0, keepdim=True), False)[0]
            _check_grid(labels[None], reference, paths[0])
            label_np = labels.numpy()
        else:
            probs_np, _ = self.predict_probabilities(paths)
            label_np = probs_np.argmax(0)
        img = label_image(label_np, reference, self.num_classes)
        return np.asanyarray(img.dataobj), img

    def predict_files(
        self,
        inputs: Iterable[PathLike],
        output_dir: PathLike,
        overwrite: bool = False,
    ) -> list[CaseResult]:
        """Predict files and folders, writing ``output_dir/<case>.nii[.gz]`` atomically.

        Folders contribute their ``.nii``/``.nii.gz`` files (sorted); nnU-Net's ``_0000``
        suffix is dropped from output names (``CASE_0000.nii.gz`` -> ``CASE.nii.gz``). Existing
        outputs are refused before anything is computed unless ``overwrite``. A bad input is
        reported and the others are still processed.

        Returns:
            one :class:`CaseResult` per case or failed input: problems found while collecting
            inputs first, then the cases in input order.
        """
        out_dir = Path(output_dir)
        if out_dir.exists() and not out_dir.is_dir():
            raise InputFileError(out_dir, "output exists and is not a folder")
        cases, problems = collect_cases(inputs, self.in_channels)
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
                _, img = self.predict_image(case.images)
                try:
                    save_nifti_atomic(img, target)
                except OSError as err:
                    raise InputFileError(target, f"cannot write: {err.strerror or err}") from err
            except SegattnError as err:
                log.info("failed %s: %s", case.source, err)
                results.append(CaseResult(case.source, None, str(err)))
                continue
            results.append(CaseResult(case.source, target))
        return results

    # -- steps -------------------------------------------------------------------------------

    def _models_for(self, key: str) -> list[_Model]:
        return [m for m in self.models if _settings_key(m.info.preprocessing) == key]

    def _check_inputs(
        self, image: PathLike | Sequence[PathLike]
    ) -> tuple[list[Path], nib.Nifti1Image]:
        paths = [Path(image)] if isinstance(image, str | Path) else [Path(p) for p in image]
        if not paths:
            raise ValueError("no image files given")
        imgs = [load_nifti_header(p) for p in paths]
        c = self.in_channels
        if len(paths) == 1:
            n = channel_count(imgs[0])
            if n != c:
                hint = "" if c == 1 else f" (a 4D file or channel files _0000.._{c - 1:04d})"
                raise InputFileError(
                    paths[0],
                    f"image has {n} channel(s), shape {imgs[0].shape}; the model takes {c}{hint}",
                )
        else:
            if len(paths) != c:
                raise InputFileError(paths[0], f"{len(paths)} channel files; the model takes {c}")
            ref = imgs[0]
            for p, img in zip(paths, imgs, strict=True):
                if channel_count(img) != 1:
                    raise InputFileError(p, f"a channel file must be 3D, got shape {img.shape}")
                if img.shape[:3] != ref.shape[:3] or not np.allclose(
                    img.affine, ref.affine, atol=1e-3
                ):
                    raise InputFileError(p, f"voxel grid differs from {paths[0]}")
        return paths, imgs[0]

    def _preprocess(self, chain: Compose, paths: list[Path]) -> dict[str, Any]:
        source: str | list[str] = str(paths[0]) if len(paths) == 1 else [str(p) for p in paths]
        try:
            data = chain({"image": source}, start=0, end=1)  # LoadImaged only
        except Exception as err:  # MONAI wraps reader errors in RuntimeError
            raise InputFileError(paths[0], f"cannot read the image data ({_root(err)})") from err
        if not bool(torch.isfinite(data["image"]).all()):
            raise InputFileError(paths[0], "image contains NaN or infinite voxel values")
        return dict(chain(data, start=1))

    def _run(self, model: _Model, image: Tensor) -> Tensor:
        """Class probabilities ``(K, *spatial)`` on the preprocessed grid, float32 on the CPU.

        The forward pass is :func:`segattn.inference.volume.predict_volume`, the same one that
        validation uses during training.
        """
        info = model.info
        x = plain_tensor(image).float().to(self.device)
        amp = (
            torch.autocast("cuda", dtype=torch.float16)
            if self.device.type == "cuda"
            else contextlib.nullcontext()
        )

        def net(t: Tensor) -> Tensor:
            out = model.net(t)
            return out[0] if isinstance(out, list | tuple) else out

        with torch.inference_mode(), amp:
            logits = predict_volume(
                net,
                x,
                mode=info.mode,
                slice_axis=info.slice_axis,
                patch_size=info.patch_size if info.mode == "3d" else None,
                slice_batch=self.sw_batch_size,
                sw_batch_size=self.sw_batch_size,
                overlap=self.overlap,
            )
            probs = torch.softmax(logits.float(), dim=0)
        return probs.cpu().clone()

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
