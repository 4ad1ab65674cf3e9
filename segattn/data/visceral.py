"""Convert the VISCERAL Anatomy3 layout (one binary mask per organ) to an nnU-Net v2 dataset.

The layout as distributed (``Volumes/``, ``Segmentations/``, RadLex IDs, annotators) is read by
:mod:`segattn.data.visceral_layout` and masks are merged by :mod:`segattn.data.visceral_merge`;
their public names are importable from here too.

:func:`convert_visceral` writes case ``<patient>_<vol>`` as ``imagesTr/<case>_0000.nii.gz``
(the volume's bytes, unchanged; a ``.nii`` volume is only gzip-compressed) and
``labelsTr/<case>.nii.gz`` (uint8, the volume's header geometry) plus ``dataset.json``:

- classes ``1..K`` are the selected organs in the order of :data:`VISCERAL_ORGANS` (a subset
  chosen with ``organs`` is renumbered consecutively in that order, whatever order it is given);
- where masks overlap, the organ with fewer voxels in that volume wins (ties: the organ earlier in
  :data:`VISCERAL_ORGANS`); overlapping voxels are counted per case;
- several annotators of one organ in one volume: ``annotator=ID`` takes that annotator's mask (a
  volume without it lacks the organ), otherwise the lowest annotator ID is taken;
- a selected organ without a mask stays background and is listed under
  ``dataset.json["missing_labels"][case]``, so that :func:`segattn.evaluation.evaluate_folders`
  scores it as not annotated (NaN) instead of as a miss. An existing but empty mask is an
  annotation (the organ is absent) and is not listed;
- ``dataset.json["visceral"]`` records the settings (modality, annotator, organs with RadLex IDs),
  and every label's header ``descrip`` carries a digest of them, so a re-run skips the cases that
  are already converted with the same settings and refuses a folder converted differently unless
  ``overwrite``.

A case whose mask grid (shape or affine) differs from its volume, or whose files cannot be read, is
reported and skipped; the other cases are still converted.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from segattn.data._convert import copy_as_nii_gz
from segattn.data.layout import (
    DATASET_JSON,
    MISSING_LABELS_KEY,
    case_name_from_image,
    channel_file,
    write_dataset_json,
)
from segattn.data.visceral_layout import (
    DEFAULT_MODALITY,
    VISCERAL_ORGANS,
    VisceralCase,
    find_cases,
    select_organs,
    visceral_labels,
)
from segattn.data.visceral_merge import MergedLabels, label_image, mask_voxels, merge_masks
from segattn.errors import InputFileError, SegattnError
from segattn.imageio import (
    GEOMETRY_TOLERANCE,
    affine_difference,
    list_images,
    open_nifti,
    write_image,
)

__all__ = [
    "DEFAULT_MODALITY",
    "FILE_ENDING",
    "MISSING_LABELS_KEY",
    "SETTINGS_KEY",
    "VISCERAL_ORGANS",
    "CaseResult",
    "ConversionReport",
    "MergedLabels",
    "VisceralCase",
    "channel_name",
    "conversion_settings",
    "convert_visceral",
    "find_cases",
    "label_image",
    "mask_voxels",
    "merge_masks",
    "select_organs",
    "settings_tag",
    "visceral_dataset_json",
    "visceral_labels",
]

SETTINGS_KEY = "visceral"
AFFINE_TOLERANCE = GEOMETRY_TOLERANCE  # masks and volume share the grid up to header rounding
FILE_ENDING = ".nii.gz"


def conversion_settings(
    modality: str = DEFAULT_MODALITY,
    annotator: int | None = None,
    organs: Sequence[str] | None = None,
) -> dict[str, Any]:
    """The settings recorded as ``dataset.json["visceral"]`` (plain JSON types)."""
    return {
        "modality": str(modality),
        "annotator": None if annotator is None else int(annotator),
        "radlex": {name: VISCERAL_ORGANS[name] for name in select_organs(organs)},
    }


def settings_tag(settings: Mapping[str, Any]) -> str:
    """Short text stored in each label's header ``descrip`` identifying the settings."""
    digest = hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]
    return f"segattn visceral {digest}"


def channel_name(modality: str) -> str:
    """nnU-Net channel name: ``"CT"`` for CT modalities (nnU-Net's CT normalisation keys on it),
    else the modality itself (``"MRT1_wb"``)."""
    return "CT" if modality.upper().startswith("CT") else modality


def visceral_dataset_json(
    settings: Mapping[str, Any], missing: Mapping[str, Sequence[str]], num_training: int
) -> dict[str, Any]:
    """The keyword arguments of :func:`segattn.data.layout.write_dataset_json` for a conversion.

    ``missing`` maps case -> organs without a mask; cases without any are left out of
    ``missing_labels``, which is sorted by case.
    """
    organs = list(settings["radlex"])
    return {
        "channel_names": {"0": channel_name(settings["modality"])},
        "labels": visceral_labels(organs),
        "num_training": num_training,
        "file_ending": FILE_ENDING,
        "name": f"VISCERAL_{settings['modality']}",
        "description": "VISCERAL Anatomy3 organ masks merged into one label map "
        "(segattn.data.visceral; overlaps: the smaller organ wins)",
        SETTINGS_KEY: dict(settings),
        MISSING_LABELS_KEY: {
            case: list(missing[case]) for case in sorted(missing) if missing[case]
        },
    }


@dataclass
class CaseResult:
    """Outcome of one case of :func:`convert_visceral`.

    ``status`` is ``"converted"``, ``"skipped"`` (already converted with the same settings; no
    overlap counts then) or ``"failed"`` (``error`` holds the one-line message).
    """

    case: str
    status: str
    missing: list[str] = field(default_factory=list)
    overlap_voxels: int = 0
    overlaps: dict[tuple[str, str], int] = field(default_factory=dict)
    error: str | None = None


@dataclass
class ConversionReport:
    """Per-case results of :func:`convert_visceral` and the dataset written."""

    dst: Path
    cases: list[CaseResult]
    dataset_json: Path | None = None

    @property
    def failed(self) -> list[CaseResult]:
        return [c for c in self.cases if c.status == "failed"]

    @property
    def overlap_voxels(self) -> int:
        """Overlapping voxels over the cases converted in this run."""
        return sum(c.overlap_voxels for c in self.cases)


def convert_visceral(
    src: str | Path,
    dst: str | Path,
    *,
    modality: str = DEFAULT_MODALITY,
    annotator: int | None = None,
    organs: Sequence[str] | None = None,
    overwrite: bool = False,
    on_case: Callable[[CaseResult], None] | None = None,
) -> ConversionReport:
    """Convert a VISCERAL folder to an nnU-Net v2 dataset (see the module docstring).

    Nothing is written into ``src``. Files are written atomically and ``dataset.json`` last; it
    lists every case present in ``dst`` (converted now or before). Cases already converted with
    the same settings are skipped unless ``overwrite``.

    Args:
        src: folder holding ``Volumes/`` and ``Segmentations/``.
        dst: dataset folder to write.
        modality: ``<modality>_<region>`` of the volumes to take, e.g. ``"CTce_ThAb"``.
        annotator: take only this annotator's masks; None: the lowest annotator ID per organ.
        organs: subset of :data:`VISCERAL_ORGANS` (renumbered in that order); None: all.
        overwrite: convert every case again and delete other cases' files from ``dst``.
        on_case: called with each :class:`CaseResult` as soon as it is known.

    Returns:
        the per-case results (failed cases included: the caller decides the exit status).

    Raises:
        InputFileError: bad ``src``/``dst``, or ``dst`` holds a dataset converted with other
            settings or other cases while ``overwrite`` is False.
        ValueError: bad ``organs``.
    """
    settings = conversion_settings(modality, annotator, organs)
    tag = settings_tag(settings)
    cases = find_cases(src, modality, annotator, organs)
    dst = Path(dst)
    _check_destination(Path(src), dst)
    images_dir, labels_dir = dst / "imagesTr", dst / "labelsTr"
    planned = {c.name for c in cases}
    present = _existing_cases(images_dir, labels_dir)
    if not overwrite:
        _refuse_foreign(dst, settings, tag, present, planned, labels_dir)
    json_path = dst / DATASET_JSON
    if json_path.is_file():
        json_path.unlink()  # rewritten at the end; a dataset without it never looks complete
    for stale in sorted(present - planned):  # only reached with overwrite
        _remove_case(images_dir, labels_dir, stale)
    images_dir.mkdir(parents=True, exist_ok=True)
    labels_dir.mkdir(parents=True, exist_ok=True)
    results = []
    for case in cases:
        image_out = channel_file(images_dir, case.name, 0, FILE_ENDING)
        label_out = labels_dir / f"{case.name}{FILE_ENDING}"
        if not overwrite and _is_converted(image_out, label_out, tag):
            result = CaseResult(case.name, "skipped", case.missing)
        else:
            try:
                merged = _convert_case(case, settings, tag, image_out, label_out)
            except SegattnError as err:
                _remove_case(images_dir, labels_dir, case.name)
                result = CaseResult(case.name, "failed", case.missing, error=str(err))
            else:
                result = CaseResult(
                    case.name, "converted", case.missing, merged.overlap_voxels, merged.overlaps
                )
        results.append(result)
        if on_case is not None:
            on_case(result)
    done = [r for r in results if r.status != "failed"]
    report = ConversionReport(dst, results)
    if done:
        fields = visceral_dataset_json(
            settings, {r.case: r.missing for r in done}, num_training=len(done)
        )
        channel_names = fields.pop("channel_names")
        labels = fields.pop("labels")
        report.dataset_json = write_dataset_json(dst, channel_names, labels, **fields)
    return report


def _convert_case(
    case: VisceralCase,
    settings: Mapping[str, Any],
    tag: str,
    image_out: Path,
    label_out: Path,
) -> MergedLabels:
    volume = open_nifti(case.volume)
    if len(volume.shape) != 3:
        raise InputFileError(case.volume, f"expected a 3D volume, got shape {volume.shape}")
    labels = visceral_labels(list(settings["radlex"]))
    masks: dict[str, np.ndarray] = {}
    for organ, path in case.masks.items():
        mask = open_nifti(path)
        shape = tuple(mask.shape)
        if shape[3:] and all(s == 1 for s in shape[3:]):
            shape = shape[:3]
        if shape != tuple(volume.shape):
            raise InputFileError(
                path,
                f"grid {shape} differs from its volume {case.volume.name} "
                f"{tuple(volume.shape)}; case {case.name} skipped",
            )
        diff = affine_difference(mask.affine, volume.affine)
        if diff > AFFINE_TOLERANCE:
            raise InputFileError(
                path,
                f"affine differs from its volume {case.volume.name} (max difference {diff:.3g}); "
                f"case {case.name} skipped",
            )
        try:
            data = np.asanyarray(mask.dataobj).reshape(volume.shape)
        except (OSError, EOFError, ValueError, zlib.error) as err:
            raise InputFileError(path, f"cannot read the mask ({err}); case skipped") from err
        masks[organ] = mask_voxels(data)
        del data
    merged = merge_masks(masks, labels, volume.shape)
    copy_as_nii_gz(case.volume, image_out)
    write_image(label_image(merged.label, volume, tag), label_out)
    return merged


def _check_destination(src: Path, dst: Path) -> None:
    src_r, dst_r = src.resolve(), dst.resolve()
    if dst_r == src_r or src_r in dst_r.parents:
        raise InputFileError(dst, f"is inside the source folder {src}; choose another --dst")
    if dst.exists() and not dst.is_dir():
        raise InputFileError(dst, "exists and is not a folder")


def _existing_cases(images_dir: Path, labels_dir: Path) -> set[str]:
    found = set()
    for folder in (images_dir, labels_dir):
        for path in list_images(folder, formats=("nifti",)):
            found.add(case_name_from_image(path, FILE_ENDING))
    return found


def _refuse_foreign(
    dst: Path,
    settings: Mapping[str, Any],
    tag: str,
    present: set[str],
    planned: set[str],
    labels_dir: Path,
) -> None:
    json_path = dst / DATASET_JSON
    if json_path.is_file():
        try:
            recorded = json.loads(json_path.read_text(encoding="utf-8")).get(SETTINGS_KEY)
        except (OSError, ValueError, AttributeError):
            recorded = None
        if recorded != dict(settings):
            what = (
                "a VISCERAL conversion with other settings ("
                + ", ".join(f"{k}={recorded.get(k)}" for k in ("modality", "annotator"))
                + f", {len(recorded.get('radlex') or {})} organs)"
                if isinstance(recorded, dict)
                else "another dataset"
            )
            raise InputFileError(json_path, f"belongs to {what}; pass --overwrite to replace it")
    others = sorted(present - planned)
    if others:
        shown = ", ".join(others[:5]) + (f" (+{len(others) - 5} more)" if len(others) > 5 else "")
        raise InputFileError(
            dst, f"holds cases that this conversion does not make ({shown}); pass --overwrite"
        )
    for case in sorted(present):
        label = labels_dir / f"{case}{FILE_ENDING}"
        if label.is_file() and _descrip(label) != tag:
            raise InputFileError(
                label, "was converted with other settings or by another tool; pass --overwrite"
            )


def _is_converted(image: Path, label: Path, tag: str) -> bool:
    return image.is_file() and label.is_file() and _descrip(label) == tag


def _descrip(path: Path) -> str | None:
    try:
        header: Any = open_nifti(path).header
        raw = header["descrip"]
    except Exception:  # an unreadable leftover counts as not converted
        return None
    return bytes(np.asarray(raw).item()).decode("latin-1").rstrip("\x00").strip()


def _remove_case(images_dir: Path, labels_dir: Path, case: str) -> None:
    channel_file(images_dir, case, 0, FILE_ENDING).unlink(missing_ok=True)
    (labels_dir / f"{case}{FILE_ENDING}").unlink(missing_ok=True)
