"""The VISCERAL Anatomy3 layout as distributed: file names, organs (RadLex IDs), annotators.

VISCERAL (Jimenez-del-Toro et al., "Cloud-based evaluation of anatomical structure segmentation
and landmark detection algorithms: VISCERAL Anatomy benchmarks", IEEE TMI 2016,
https://doi.org/10.1109/TMI.2016.2578680) ships each scan as
``Volumes/<patient>_<vol>_<modality>_<region>.nii.gz`` and each annotated organ as a binary mask
``Segmentations/<patient>_<vol>_<modality>_<region>_<RadLexID>_<annotator>.nii.gz``, e.g.
``Volumes/10000100_1_CTce_ThAb.nii.gz`` and ``Segmentations/10000100_1_CTce_ThAb_58_7.nii.gz``
(liver, annotator 7). Here ``modality`` means ``<modality>_<region>`` (``CTce_ThAb``, ``CT_wb``,
``MRT1_wb``, ``MRT1cefs_Ab``); ``.nii`` files and sub-folders of ``Volumes``/``Segmentations``
are accepted, other files (landmarks ``.fcsv``, unknown RadLex IDs) are ignored.

:func:`find_cases` pairs each volume with one mask per selected organ: several annotators of one
organ in one volume give the chosen annotator's mask (a volume without it lacks the organ), or
else the lowest annotator ID's. Only file names are looked at here; the conversion itself is
:func:`segattn.data.visceral.convert_visceral`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from segattn.errors import InputFileError
from segattn.imageio import list_images, strip_ending

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
        match = _VOLUME_NAME.match(strip_ending(path))
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
        match = _MASK_NAME.match(strip_ending(path))
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


def _subfolder(src: Path, name: str) -> Path:
    for candidate in (src / name, src / name.lower()):
        if candidate.is_dir():
            return candidate
    raise InputFileError(src / name, f"missing folder (a VISCERAL folder holds {name}/)")


def _nifti_files(folder: Path) -> list[Path]:
    return list_images(folder, formats=("nifti",), recursive=True)
