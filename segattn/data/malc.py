"""MICCAI 2012 Multi-Atlas Labeling Challenge (MALC) data -> nnU-Net v2 raw dataset.

The challenge data (OASIS T1 scans with Neuromorphometrics label IDs) is distributed as::

    SRC/training-images/1000_3.nii(.gz)    training-labels/1000_3_glm.nii(.gz)
    SRC/testing-images/1003_3.nii(.gz)     testing-labels/1003_3_glm.nii(.gz)

:func:`prepare_malc` writes ``imagesTr/CASE_0000.nii.gz`` + ``labelsTr/CASE.nii.gz`` (testing ->
``imagesTs``/``labelsTs``) and ``dataset.json``, with the label protocol ``quicknat`` (QuickNAT's
33 classes, Roy et al., NeuroImage 2019, https://arxiv.org/abs/1801.04161) or ``all`` (every ID
kept); see :mod:`segattn.data.malc_labels`. ``dataset.json`` records the protocol
(``malc_protocol``) and each class's original ID (``original_label_ids``, name -> ID).

Images are copied bit-exact (a ``.nii`` is only gzip-compressed), so header, data type and scaling
stay as distributed; label maps keep their header and affine and become uint8 (int16 beyond 255
classes).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from segattn.data._convert import copy_as_nii_gz
from segattn.data.layout import DATASET_JSON, channel_file, write_dataset_json
from segattn.data.malc_labels import (
    PROTOCOLS,
    QUICKNAT_IDS,
    QUICKNAT_LABELS,
    IdToClass,
    all_protocol_labels,
    id_lookup,
    present_ids,
    quicknat_class,
    relabel,
    structure_name,
    to_quicknat,
)
from segattn.errors import InputFileError, SegattnError
from segattn.imageio import (
    GEOMETRY_TOLERANCE,
    affine_difference,
    label_dtype,
    label_image,
    list_images,
    open_nifti,
    strip_ending,
    write_image,
)

__all__ = [
    "GRID_TOLERANCE_MM",
    "PROTOCOLS",
    "QUICKNAT_IDS",
    "QUICKNAT_LABELS",
    "PrepareReport",
    "SourceCase",
    "find_source_cases",
    "prepare_malc",
    "to_quicknat",
]

logger = logging.getLogger(__name__)

#: Largest difference (mm) between image and label affines still taken as the same grid.
GRID_TOLERANCE_MM = GEOMETRY_TOLERANCE

_SUBSETS = (("training", "Tr"), ("testing", "Ts"))
_LABEL_SUFFIX = "_glm"


@dataclass(frozen=True)
class SourceCase:
    """One case of the challenge layout; ``subset`` is ``"Tr"`` (training) or ``"Ts"``."""

    name: str
    subset: str
    image: Path
    label: Path | None


@dataclass
class PrepareReport:
    """What :func:`prepare_malc` did: case names converted or skipped (already finished), and
    one ``"<file>: <problem>"`` line per failure."""

    converted: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    dataset_json: Path | None = None


def find_source_cases(src: str | Path) -> tuple[list[SourceCase], list[str]]:
    """Cases of a MALC folder, sorted by subset then name, and problems with its file names.

    The case name is the image's name without ``.nii``/``.nii.gz`` (``1000_3``); its label is
    ``<subset>-labels/<case>_glm.nii(.gz)``. Testing cases may lack labels when there is no
    ``testing-labels/`` folder at all.

    Raises:
        InputFileError: ``src`` or its ``training-images/`` folder is missing.
    """
    src = Path(src)
    if not src.is_dir():
        raise InputFileError(src, "MALC folder not found" if not src.exists() else "not a folder")
    if not (src / "training-images").is_dir():
        raise InputFileError(
            src / "training-images",
            "missing (a MICCAI 2012 multi-atlas folder holds training-images/ and "
            "training-labels/)",
        )
    cases: list[SourceCase] = []
    problems: list[str] = []
    for folder, subset in _SUBSETS:
        images = _nifti_files(src / f"{folder}-images", problems, suffix="")
        labels_dir = src / f"{folder}-labels"
        labels = _nifti_files(labels_dir, problems, suffix=_LABEL_SUFFIX)
        for name, orphan in sorted(labels.items()):
            if name not in images:
                problems.append(
                    f"{orphan}: no image {folder}-images/{name}.nii(.gz) for this label"
                )
        for name, image in sorted(images.items()):
            label = labels.get(name)
            if label is None and (subset == "Tr" or labels_dir.is_dir()):
                problems.append(f"{image}: no label {folder}-labels/{name}{_LABEL_SUFFIX}.nii(.gz)")
                continue
            cases.append(SourceCase(name, subset, image, label))
    return cases, problems


def prepare_malc(
    src: str | Path,
    dst: str | Path,
    protocol: str = "quicknat",
    overwrite: bool = False,
    on_case: Callable[[str, str, str], None] | None = None,
) -> PrepareReport:
    """Convert a MALC folder into an nnU-Net v2 raw dataset; see the module docstring.

    A case whose image and label grids differ (shape, or affine beyond
    :data:`GRID_TOLERANCE_MM`), or whose files cannot be read, fails with one line in
    ``report.failed``; the others are converted. Cases whose outputs both exist are skipped unless
    ``overwrite``. Every file is written atomically; ``dataset.json`` is written before the cases
    (so a re-run with another protocol is noticed) and again at the end with the final
    ``numTraining``.

    Args:
        src: the challenge folder (read only).
        dst: the dataset folder to write; not ``src`` nor inside it.
        protocol: ``"quicknat"`` or ``"all"``.
        overwrite: convert every case again, and replace a dataset made with other settings.
        on_case: called as ``on_case(case, status, message)`` after each case, ``status`` one of
            ``converted``, ``skipped``, ``failed``.

    Raises:
        ValueError: unknown ``protocol``.
        SegattnError: missing source folders, ``dst`` inside ``src``, ``dst`` holding another
            dataset (without ``overwrite``), or no training case to convert.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {', '.join(PROTOCOLS)}, got {protocol!r}")
    src, dst = Path(src), Path(dst)
    cases, problems = find_source_cases(src)
    _check_not_inside(src, dst)
    report = PrepareReport(failed=list(problems))
    if not any(c.subset == "Tr" for c in cases):
        raise SegattnError(f"{src / 'training-images'}: no training case with a label found")

    failed: dict[tuple[str, str], str] = {}
    if protocol == "quicknat":
        id_to_class: IdToClass = quicknat_class
        labels, original = dict(QUICKNAT_LABELS), dict(_quicknat_original())
    else:
        ids: set[int] = set()
        for case in cases:
            if case.label is not None:
                try:
                    ids |= present_ids(_read_ids(open_nifti(case.label), case.label))
                except InputFileError as err:
                    failed[case.name, case.subset] = str(err)
        labels, original = all_protocol_labels(ids)
        id_to_class = id_lookup(labels, original)
    extra = {"malc_protocol": protocol, "original_label_ids": original}
    _check_destination(dst, labels, extra, overwrite)

    n_training = sum(c.subset == "Tr" for c in cases)
    report.dataset_json = _write_json(dst, labels, n_training, protocol, extra)
    for case in cases:
        image_out, label_out = _outputs(dst, case)
        finished = image_out.is_file() and (case.label is None or label_out.is_file())
        if (case.name, case.subset) in failed:
            status, message = "failed", failed[case.name, case.subset]
        elif finished and not overwrite:
            status, message = "skipped", "already converted"
        else:
            try:
                _convert(case, image_out, label_out, id_to_class, len(labels))
                status, message = "converted", ""
            except (InputFileError, OSError) as err:
                status, message = "failed", _one_line(err, case)
        getattr(report, status).append(message if status == "failed" else case.name)
        logger.info("%s (%s): %s %s", case.name, case.subset, status, message)
        if on_case is not None:
            on_case(case.name, status, message)
    done = [c for c in cases if c.subset == "Tr" and all(p.is_file() for p in _outputs(dst, c))]
    _write_json(dst, labels, len(done), protocol, extra)
    return report


def _quicknat_original() -> list[tuple[str, int]]:
    return [("background", 0), *((structure_name(i), i) for i in QUICKNAT_IDS)]


def _nifti_files(folder: Path, problems: list[str], suffix: str) -> dict[str, Path]:
    """Case name -> file for the NIfTI files in ``folder`` (name ``CASE{suffix}.nii(.gz)``)."""
    found: dict[str, Path] = {}
    for path in list_images(folder, formats=("nifti",)):
        stem = strip_ending(path)
        if not stem.endswith(suffix):
            problems.append(f"{path}: label file name does not end in {suffix}.nii(.gz)")
            continue
        name = stem[: len(stem) - len(suffix)]
        if name in found:
            problems.append(f"{path}: case {name} has two files ({found[name].name} too)")
            continue
        found[name] = path
    return found


def _check_not_inside(src: Path, dst: Path) -> None:
    source, target = src.resolve(), dst.resolve()
    if target == source or source in target.parents:
        raise SegattnError(f"{dst}: the output folder must not be the source folder or inside it")
    for folder in ("imagesTr", "labelsTr", "imagesTs", "labelsTs"):
        out = target / folder
        if source == out or out in source.parents:
            raise SegattnError(f"{src}: the source folder must not be inside the output's {folder}")


def _check_destination(
    dst: Path, labels: Mapping[str, int], extra: Mapping[str, Any], overwrite: bool
) -> None:
    """Refuse, without ``overwrite``, a ``dst`` that holds anything but this conversion."""
    json_path = dst / DATASET_JSON
    if json_path.is_file():
        try:
            meta = json.loads(json_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            meta = None
        meta = meta if isinstance(meta, dict) else {}
        same = meta.get("labels") == dict(labels)
        if (same and all(meta.get(k) == v for k, v in extra.items())) or overwrite:
            return
        protocol = meta.get("malc_protocol")
        what = f"a MALC dataset prepared with protocol {protocol!r}" if protocol else "a dataset"
        if protocol == extra["malc_protocol"]:
            what = "a MALC dataset prepared from other label IDs"
        raise SegattnError(f"{json_path}: holds {what}; pass --overwrite to replace it")
    if dst.is_dir() and not overwrite and any(not p.name.startswith(".") for p in dst.iterdir()):
        raise SegattnError(
            f"{dst}: not empty and not made by prepare_malc; choose an empty folder or pass "
            "--overwrite"
        )
    if dst.exists() and not dst.is_dir():
        raise InputFileError(dst, "exists and is not a folder")


def _write_json(
    dst: Path, labels: dict[str, int], n_training: int, protocol: str, extra: dict[str, Any]
) -> Path:
    rule = (
        "cortical parcels (IDs >= 100) collapsed to left (odd) 211 / right (even) 210 cortex, "
        "32 structures kept (QuickNAT), other IDs -> background"
        if protocol == "quicknat"
        else "every label ID kept, renumbered in increasing order"
    )
    return write_dataset_json(
        dst,
        {"0": "T1"},
        labels,
        n_training,
        name="MALC2012",
        description=f"MICCAI 2012 Multi-Atlas Labeling Challenge (OASIS T1, Neuromorphometrics "
        f"labels), protocol {protocol}: {rule}",
        **extra,
    )


def _outputs(dst: Path, case: SourceCase) -> tuple[Path, Path]:
    image = channel_file(dst / f"images{case.subset}", case.name, 0)
    return image, dst / f"labels{case.subset}" / f"{case.name}.nii.gz"


def _read_ids(image: Any, path: Path) -> np.ndarray:
    """Integer label data of a loaded label image (float data must hold whole numbers)."""
    try:
        data = np.asanyarray(image.dataobj)
    except Exception as err:
        raise InputFileError(path, f"cannot read the label data: {err}") from None
    if data.dtype.kind == "f":
        if not np.isfinite(data).all() or not np.array_equal(data, np.round(data)):
            raise InputFileError(path, "label values are not all whole numbers")
        return data.astype(np.int64)
    if data.dtype.kind not in "iu":
        return data.astype(np.int64)
    return data


def _convert(
    case: SourceCase, image_out: Path, label_out: Path, id_to_class: IdToClass, num_classes: int
) -> None:
    image = open_nifti(case.image)
    classes_image = None
    if case.label is not None:
        label = open_nifti(case.label)
        _check_grid(case, image, label)
        classes = relabel(_read_ids(label, case.label), id_to_class, label_dtype(num_classes))
        # the source label's header and affine (a NIfTI-2 source stays NIfTI-2)
        classes_image = label_image(classes, label, num_classes)
    image_out.parent.mkdir(parents=True, exist_ok=True)
    copy_as_nii_gz(case.image, image_out)
    if classes_image is not None:
        label_out.parent.mkdir(parents=True, exist_ok=True)
        write_image(classes_image, label_out)


def _check_grid(case: SourceCase, image: Any, label: Any) -> None:
    assert case.label is not None
    if tuple(label.shape) != tuple(image.shape):
        shape = "x".join(map(str, label.shape))
        raise InputFileError(
            case.label,
            f"grid {shape} does not match its image {case.image.name} "
            f"({'x'.join(map(str, image.shape))})",
        )
    difference = affine_difference(label.affine, image.affine)
    if not difference <= GRID_TOLERANCE_MM:
        raise InputFileError(
            case.label,
            f"affine differs from its image {case.image.name} by up to {difference:.3g} mm",
        )


def _one_line(err: InputFileError | OSError, case: SourceCase) -> str:
    if isinstance(err, OSError):
        return f"{err.filename or case.image}: {err.strerror or err}"
    return " ".join(str(err).split())
