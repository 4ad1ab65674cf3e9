"""File naming and format detection for every image format segattn reads and writes.

A *scan* is one image file (``.nii``, ``.nii.gz``, ``.nrrd``, ``.nhdr``, ``.mha``, ``.mhd``) or
one folder of DICOM files (a DICOM series). Names compare case-insensitively on the ending.
"""

from __future__ import annotations

import re
from pathlib import Path

#: File endings by format name, longest first where one ends another (``.nii.gz`` before ``.nii``).
ENDINGS: dict[str, tuple[str, ...]] = {
    "nifti": (".nii.gz", ".nii"),
    "nrrd": (".nrrd", ".nhdr"),
    "mha": (".mha", ".mhd"),
}
#: Every image file ending segattn reads.
IMAGE_ENDINGS: tuple[str, ...] = tuple(e for endings in ENDINGS.values() for e in endings)
#: The ending written for each output format (``.nhdr``/``.mhd`` inputs write one-file formats).
OUTPUT_ENDINGS = {"nifti": ".nii.gz", "nrrd": ".nrrd", "mha": ".mha", "dicom-seg": ".dcm"}
#: Values of ``--output-format``.
OUTPUT_FORMATS = ("nifti", "nrrd", "mha", "same", "dicom-seg")

_CHANNEL_SUFFIX = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})$")
_DICOM_ENDINGS = (".dcm", ".ima", ".dicom")


def image_ending(path: str | Path) -> str | None:
    """The image file ending of ``path`` (lower case), e.g. ``".nii.gz"`` or ``".nrrd"``; None
    for any other name."""
    name = Path(path).name.lower()
    for ending in sorted(IMAGE_ENDINGS, key=len, reverse=True):
        if name.endswith(ending) and len(name) > len(ending):
            return ending
    return None


def file_format(path: str | Path) -> str | None:
    """``"nifti"``, ``"nrrd"`` or ``"mha"`` from the file name; None for other names."""
    ending = image_ending(path)
    for fmt, endings in ENDINGS.items():
        if ending in endings:
            return fmt
    return None


def strip_ending(path: str | Path) -> str:
    """File name without its image ending: ``"dir/CASE_0000.nii.gz"`` -> ``"CASE_0000"``; a
    folder (DICOM series) keeps its whole name."""
    name = Path(path).name
    ending = image_ending(name)
    return name[: -len(ending)] if ending else name


def split_channel_suffix(stem: str) -> tuple[str, int | None]:
    """``"CASE_0001"`` -> ``("CASE", 1)``; a stem without a 4-digit suffix -> ``(stem, None)``."""
    match = _CHANNEL_SUFFIX.match(stem)
    if match is None:
        return stem, None
    return match["case"], int(match["channel"])


def case_name(path: str | Path) -> str:
    """The case a file or series folder stands for: the ending and nnU-Net's ``_0000`` suffix
    removed (``CASE_0000.nrrd`` -> ``CASE``; ``CASE_0001.nrrd`` stays ``CASE_0001``)."""
    stem = strip_ending(path)
    case, channel = split_channel_suffix(stem)
    return case if channel == 0 else stem


def output_ending(source: str | Path, output_format: str = "same") -> str:
    """The ending of the label map written for ``source``.

    ``"same"`` keeps the source's format (``.nii``/``.nii.gz`` kept as they are, ``.nhdr`` ->
    ``.nrrd``, ``.mhd`` -> ``.mha``: one file each); a DICOM series gets NIfTI (``.nii.gz``).

    Raises:
        ValueError: unknown ``output_format``.
    """
    if output_format not in OUTPUT_FORMATS:
        raise ValueError(f"output format must be one of {OUTPUT_FORMATS}, got {output_format!r}")
    if output_format != "same":
        return OUTPUT_ENDINGS[output_format]
    fmt = file_format(source)
    if fmt is None:  # a DICOM series
        return OUTPUT_ENDINGS["nifti"]
    if fmt == "nifti":
        return image_ending(source) or OUTPUT_ENDINGS["nifti"]
    return OUTPUT_ENDINGS[fmt]


def output_name(source: str | Path, output_format: str = "same") -> str:
    """The label-map file name for ``source``: :func:`case_name` + :func:`output_ending`.

    ``CASE_0000.nii.gz`` -> ``CASE.nii.gz``; ``scan.nhdr`` -> ``scan.nrrd``; a series folder
    ``dicom/CT1`` -> ``CT1.nii.gz`` (``CT1.dcm`` with ``dicom-seg``).
    """
    return case_name(source) + output_ending(source, output_format)


def list_images(
    folder: str | Path, formats: tuple[str, ...] | None = None, recursive: bool = False
) -> list[Path]:
    """The image files in ``folder`` (or below it, with ``recursive``), sorted, hidden files
    skipped; ``formats`` (e.g. ``("nifti",)``) keeps only those formats. A missing folder has
    none."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    candidates = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(
        p
        for p in candidates
        if not p.name.startswith(".")
        and p.is_file()
        and file_format(p) is not None
        and (formats is None or file_format(p) in formats)
    )


def looks_like_dicom(path: Path) -> bool:
    """True if the file has a DICOM ending or the ``DICM`` marker at byte 128 (hidden files and
    image files of the other formats are not DICOM)."""
    if path.name.startswith(".") or not path.is_file() or image_ending(path) is not None:
        return False
    if path.suffix.lower() in _DICOM_ENDINGS:
        return True
    try:
        with path.open("rb") as fh:
            fh.seek(128)
            return fh.read(4) == b"DICM"
    except OSError:
        return False


def dicom_files(folder: str | Path) -> list[Path]:
    """The DICOM files directly inside ``folder``, sorted by name."""
    folder = Path(folder)
    return sorted(p for p in folder.iterdir() if looks_like_dicom(p))


def is_dicom_folder(path: str | Path) -> bool:
    """True if ``path`` is a folder with at least one DICOM file directly inside."""
    path = Path(path)
    return path.is_dir() and any(looks_like_dicom(p) for p in path.iterdir())
