"""Convert the VISCERAL Anatomy3 layout (one binary mask per organ) to an nnU-Net v2 dataset.

VISCERAL (Jimenez-del-Toro et al., "Cloud-based evaluation of anatomical structure segmentation
and landmark detection algorithms: VISCERAL Anatomy benchmarks", IEEE TMI 2016,
https://doi.org/10.1109/TMI.2016.2578680) ships each scan as
``Volumes/<patient>_<vol>_<modality>_<region>.nii.gz`` and each annotated organ as a binary mask
``Segmentations/<patient>_<vol>_<modality>_<region>_<RadLexID>_<annotator>.nii.gz``, e.g.
``Volumes/10000100_1_CTce_ThAb.nii.gz`` and ``Segmentations/10000100_1_CTce_ThAb_58_7.nii.gz``
(liver, annotator 7). Here ``modality`` means ``<modality>_<region>`` (``CTce_ThAb``, ``CT_wb``,
``MRT1_wb``, ``MRT1cefs_Ab``); ``.nii`` files and sub-folders of ``Volumes``/``Segmentations``
are accepted, other files (landmarks ``.fcsv``, unknown RadLex IDs) are ignored.

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

import gzip
import hashlib
import json
import logging
import re
import shutil
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from segattn.data.layout import (
    DATASET_JSON,
    case_name_from_image,
    channel_file,
    nifti_ending,
    strip_nifti_ending,
    write_dataset_json,
)
from segattn.errors import InputFileError, SegattnError
from segattn.fileio import atomic_path, copy_atomic, save_nifti_atomic

logger = logging.getLogger(__name__)

#: Organ name -> RadLex ID, in class order (class 1 = liver, ..., class 20 = thyroid gland).
VISCERAL_ORGANS: dict[str, int] = {
    "liver": 58,
    "spleen": 86,
    "aorta": 480,
    "trachea": 1247,
    "right_lung": 1302,
    "left_lung": 1326,
    "pancreas": 170,
    "gallbladder": 187,
    "urinary_bladder": 237,
    "sternum": 2473,
    "lumbar_vertebra_1": 29193,
    "right_kidney": 29662,
    "left_kidney": 29663,
    "right_adrenal_gland": 30324,
    "left_adrenal_gland": 30325,
    "right_psoas_major": 32248,
    "left_psoas_major": 32249,
    "right_rectus_abdominis": 40357,
    "left_rectus_abdominis": 40358,
    "thyroid_gland": 7578,
}
DEFAULT_MODALITY = "CTce_ThAb"
MISSING_LABELS_KEY = "missing_labels"
SETTINGS_KEY = "visceral"
AFFINE_TOLERANCE = 1e-3  # mm; masks and volume must share the grid up to header rounding
FILE_ENDING = ".nii.gz"

_VOLUME_NAME = re.compile(r"^(?P<patient>[A-Za-z0-9]+)_(?P<vol>\d+)_(?P<modality>[A-Za-z]\w*)$")
_MASK_NAME = re.compile(
    r"^(?P<patient>[A-Za-z0-9]+)_(?P<vol>\d+)_(?P<modality>[A-Za-z]\w*?)"
    r"_(?P<radlex>\d+)_(?P<annotator>\d+)$"
)
_RADLEX_TO_NAME = {radlex: name for name, radlex in VISCERAL_ORGANS.items()}


def visceral_labels(organs: Sequence[str] | None = None) -> dict[str, int]:
    """``{"background": 0, organ: 1, ...}`` for ``organs`` (default: all 20) in class order.

    Raises:
        ValueError: an unknown or repeated organ name, or an empty selection.
    """
    return {"background": 0, **{n: i for i, n in enumerate(select_organs(organs), start=1)}}


def select_organs(organs: Sequence[str] | None = None) -> list[str]:
    """The chosen organ names in the order of :data:`VISCERAL_ORGANS` (default: all).

    Raises:
        ValueError: an unknown or repeated name (the message lists the valid ones), or none.
    """
    if organs is None:
        return list(VISCERAL_ORGANS)
    names = [str(o) for o in organs]
    unknown = [n for n in names if n not in VISCERAL_ORGANS]
    if unknown:
        raise ValueError(
            f"unknown organ(s) {', '.join(unknown)}; choose from {', '.join(VISCERAL_ORGANS)}"
        )
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"organ(s) given twice: {', '.join(repeated)}")
    if not names:
        raise ValueError("select at least one organ")
    return [n for n in VISCERAL_ORGANS if n in names]


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


@dataclass(frozen=True)
class VisceralCase:
    """One source volume and the mask chosen for each selected organ.

    Attributes:
        name: case name ``<patient>_<vol>``.
        volume: the volume file.
        masks: organ name -> chosen mask file, in class order.
        missing: selected organs without a (chosen annotator's) mask, in class order.
    """

    name: str
    volume: Path
    masks: dict[str, Path]
    missing: list[str]


@dataclass
class MergedLabels:
    """Result of :func:`merge_masks`.

    Attributes:
        label: uint8 label map.
        overlap_voxels: voxels inside more than one mask.
        overlaps: ``(kept, overwritten)`` organ pair -> voxels of ``overwritten`` given to the
            smaller ``kept`` (a voxel in three masks counts once for each of two pairs).
    """

    label: np.ndarray
    overlap_voxels: int = 0
    overlaps: dict[tuple[str, str], int] = field(default_factory=dict)


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


def mask_voxels(mask: np.ndarray) -> np.ndarray:
    """Flat (C-order) indices of the voxels > 0 of a mask: the form :func:`merge_masks` takes."""
    return np.flatnonzero(np.asarray(mask) > 0)


def merge_masks(
    masks: Mapping[str, np.ndarray], labels: Mapping[str, int], shape: Sequence[int]
) -> MergedLabels:
    """Merge binary organ masks into one uint8 label map; the smaller organ wins overlaps.

    Organs are painted from the largest (most voxels) to the smallest, so every overlapping voxel
    ends up with the smallest organ containing it; among organs of equal size, the one with the
    lower label value wins.

    Args:
        masks: organ name -> flat C-order voxel indices (see :func:`mask_voxels`); this keeps
            twenty masks of a 512x512x400 CT volume in tens, not thousands, of megabytes.
        labels: organ name -> label value (1..255) for every key of ``masks``.
        shape: the grid shape.

    Returns:
        the label map of ``shape`` and the overlap counts.

    Example:
        >>> a, b = np.zeros((4, 4), bool), np.zeros((4, 4), bool)
        >>> a[:2], b[1, :2] = True, True
        >>> merged = merge_masks({"liver": mask_voxels(a), "gallbladder": mask_voxels(b)},
        ...                      {"liver": 1, "gallbladder": 2}, (4, 4))
        >>> merged.label[1].tolist(), merged.overlap_voxels, merged.overlaps
        ([2, 2, 1, 1], 2, {('gallbladder', 'liver'): 2})
    """
    unknown = [name for name in masks if name not in labels]
    if unknown:
        raise ValueError(f"no label value for {unknown}")
    values = {name: int(labels[name]) for name in masks}
    if any(not 1 <= v <= 255 for v in values.values()):
        raise ValueError(f"label values must be in 1..255, got {values}")
    name_of = {v: name for name, v in values.items()}
    size = int(np.prod(shape))
    label = np.zeros(size, np.uint8)
    overlaps: dict[tuple[str, str], int] = {}
    overwritten: list[np.ndarray] = []
    for name in sorted(masks, key=lambda n: (-len(masks[n]), -values[n])):
        index = np.asarray(masks[name])
        if index.size and (index.min() < 0 or index.max() >= size):
            raise ValueError(f"mask {name!r} has voxel indices outside a grid of {tuple(shape)}")
        previous = label[index]
        taken = previous != 0
        if taken.any():
            overwritten.append(index[taken])
            counts = np.bincount(previous[taken], minlength=256)
            for value in np.flatnonzero(counts):
                overlaps[(name, name_of[int(value)])] = int(counts[value])
        label[index] = values[name]
    overlap_voxels = int(np.unique(np.concatenate(overwritten)).size) if overwritten else 0
    return MergedLabels(label.reshape(tuple(shape)), overlap_voxels, overlaps)


def label_image(label: np.ndarray, volume: nib.Nifti1Image, tag: str = "") -> nib.Nifti1Image:
    """A uint8 label NIfTI with ``volume``'s header geometry (qform, sform and their codes).

    The header is the volume's with the data type set to uint8, no intensity scaling and
    ``descrip`` set to ``tag``.
    """
    header = nib.Nifti1Header()
    source = volume.header
    header.set_data_shape(label.shape)
    header.set_zooms(tuple(float(z) for z in source.get_zooms()[: label.ndim]))
    header.set_xyzt_units(*source.get_xyzt_units())
    qform, qcode = source.get_qform(coded=True)
    sform, scode = source.get_sform(coded=True)
    if qform is not None:
        header.set_qform(qform, code=int(qcode))
    if sform is not None:
        header.set_sform(sform, code=int(scode))
    if qform is None and sform is None:  # an Analyze-like header: keep its best affine
        header.set_sform(volume.affine, code=1)
    header.set_data_dtype(np.uint8)
    header["descrip"] = tag.encode()[:79]
    return nib.Nifti1Image(np.ascontiguousarray(label, dtype=np.uint8), None, header=header)


def find_cases(
    src: str | Path,
    modality: str = DEFAULT_MODALITY,
    annotator: int | None = None,
    organs: Sequence[str] | None = None,
) -> list[VisceralCase]:
    """The cases of one modality in a VISCERAL folder, sorted by name, with their chosen masks.

    Raises:
        InputFileError: ``src``, its ``Volumes`` or ``Segmentations`` folder is missing, no
            volume of ``modality`` is found, or two files claim the same volume or mask.
        ValueError: bad ``organs``.
    """
    chosen = select_organs(organs)
    src = Path(src)
    if not src.is_dir():
        raise InputFileError(src, "no such folder" if not src.exists() else "not a folder")
    volumes_dir, masks_dir = _subfolder(src, "Volumes"), _subfolder(src, "Segmentations")
    volumes: dict[str, Path] = {}
    for path in _nifti_files(volumes_dir):
        match = _VOLUME_NAME.match(strip_nifti_ending(path))
        if match is None or match["modality"] != modality:
            continue
        case = f"{match['patient']}_{match['vol']}"
        if case in volumes:
            raise InputFileError(path, f"volume of case {case} also stored as {volumes[case]}")
        volumes[case] = path
    if not volumes:
        raise InputFileError(
            volumes_dir, f"no volumes named <patient>_<vol>_{modality}.nii[.gz] found"
        )
    found: dict[tuple[str, str], dict[int, Path]] = {}
    for path in _nifti_files(masks_dir):
        match = _MASK_NAME.match(strip_nifti_ending(path))
        if match is None or match["modality"] != modality:
            continue
        case = f"{match['patient']}_{match['vol']}"
        organ = _RADLEX_TO_NAME.get(int(match["radlex"]))
        if organ is None or organ not in chosen:
            continue
        if case not in volumes:
            logger.warning("%s: no volume %s_%s; ignored", path, case, modality)
            continue
        by_annotator = found.setdefault((case, organ), {})
        reader = int(match["annotator"])
        if reader in by_annotator:
            raise InputFileError(path, f"mask also stored as {by_annotator[reader]}")
        by_annotator[reader] = path
    cases = []
    for case in sorted(volumes):
        masks: dict[str, Path] = {}
        for organ in chosen:
            by_annotator = found.get((case, organ), {})
            if annotator is not None:
                if annotator in by_annotator:
                    masks[organ] = by_annotator[annotator]
            elif by_annotator:
                masks[organ] = by_annotator[min(by_annotator)]
        missing = [organ for organ in chosen if organ not in masks]
        cases.append(VisceralCase(case, volumes[case], masks, missing))
    return cases


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
    volume = _load(case.volume)
    if len(volume.shape) != 3:
        raise InputFileError(case.volume, f"expected a 3D volume, got shape {volume.shape}")
    labels = visceral_labels(list(settings["radlex"]))
    masks: dict[str, np.ndarray] = {}
    for organ, path in case.masks.items():
        mask = _load(path)
        shape = tuple(mask.shape)
        if shape[3:] and all(s == 1 for s in shape[3:]):
            shape = shape[:3]
        if shape != tuple(volume.shape):
            raise InputFileError(
                path,
                f"grid {shape} differs from its volume {case.volume.name} "
                f"{tuple(volume.shape)}; case {case.name} skipped",
            )
        diff = float(np.max(np.abs(mask.affine - volume.affine)))
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
    _copy_volume(case.volume, image_out)
    save_nifti_atomic(label_image(merged.label, volume, tag), label_out)
    return merged


def _copy_volume(src: Path, dst: Path) -> None:
    """The volume's bytes as ``dst`` (.nii.gz): copied, or gzip-compressed if ``src`` is .nii."""
    if nifti_ending(src) == ".nii.gz":
        copy_atomic(src, dst)
        return
    with (
        atomic_path(dst) as tmp,
        src.open("rb") as fin,
        gzip.GzipFile(tmp, "wb", mtime=0) as fout,
    ):
        shutil.copyfileobj(fin, fout, 1 << 20)


def _load(path: Path) -> nib.Nifti1Image:
    try:
        img = nib.load(path)
    except Exception as err:  # nibabel raises many kinds for a broken file
        raise InputFileError(path, f"cannot read as NIfTI ({err})") from err
    if not isinstance(img, nib.Nifti1Image | nib.Nifti2Image):
        raise InputFileError(path, f"not a NIfTI image ({type(img).__name__})")
    return img


def _subfolder(src: Path, name: str) -> Path:
    for candidate in (src / name, src / name.lower()):
        if candidate.is_dir():
            return candidate
    raise InputFileError(src / name, f"missing folder (a VISCERAL folder holds {name}/)")


def _nifti_files(folder: Path) -> list[Path]:
    return sorted(
        p
        for p in folder.rglob("*")
        if p.is_file() and not p.name.startswith(".") and nifti_ending(p) is not None
    )


def _check_destination(src: Path, dst: Path) -> None:
    src_r, dst_r = src.resolve(), dst.resolve()
    if dst_r == src_r or src_r in dst_r.parents:
        raise InputFileError(dst, f"is inside the source folder {src}; choose another --dst")
    if dst.exists() and not dst.is_dir():
        raise InputFileError(dst, "exists and is not a folder")


def _existing_cases(images_dir: Path, labels_dir: Path) -> set[str]:
    found = set()
    for folder in (images_dir, labels_dir):
        if folder.is_dir():
            for path in folder.iterdir():
                if path.is_file() and not path.name.startswith(".") and nifti_ending(path):
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
        header: Any = nib.load(path).header
        raw = header["descrip"]
    except Exception:  # an unreadable leftover counts as not converted
        return None
    return bytes(np.asarray(raw).item()).decode("latin-1").rstrip("\x00").strip()


def _remove_case(images_dir: Path, labels_dir: Path, case: str) -> None:
    channel_file(images_dir, case, 0, FILE_ENDING).unlink(missing_ok=True)
    (labels_dir / f"{case}{FILE_ENDING}").unlink(missing_ok=True)
