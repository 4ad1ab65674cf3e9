"""DICOM series: find them in a folder, check that they form one regular volume, read them.

A folder of DICOM files is one scan. Its files are grouped by series (GDCM, through SimpleITK's
``ImageSeriesReader.GetGDCMSeriesIDs``); several image series need a choice (``series=UID``).
Before any voxel is read, the headers of the chosen series (pydicom, no pixel data) must describe
one regular grid; otherwise one line says why and nothing is read: non-image objects (reports,
segmentations), mixed image sizes or orientations, two slices at one position, a gantry tilt, a
missing slice or uneven slice spacing. Voxels then come from ``ImageSeriesReader`` in the order of
the slice positions along the slice normal, with the rescale slope/intercept applied.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from segattn.errors import InputFileError
from segattn.imageio._locale import locale_kept
from segattn.imageio.geometry import GEOMETRY_TOLERANCE
from segattn.imageio.naming import dicom_files

#: Relative wobble of slice gaps still taken as one regular spacing (1 % of the spacing).
SLICE_GAP_TOLERANCE = 0.01

#: Modalities of DICOM objects that hold no image volume.
NON_IMAGE_MODALITIES = {"SR", "SEG", "RTSTRUCT", "RTPLAN", "PR", "KO", "DOC", "REG", "AU", "ECG"}


@dataclass(frozen=True)
class SeriesInfo:
    """One series of a folder: its UID, description, modality and files (sorted by name)."""

    uid: str
    description: str
    modality: str
    files: tuple[Path, ...]
    kind: str | None  # None for an image series, else what it is ("Basic Text SR Storage")

    def line(self) -> str:
        """``UID (description, N slices)`` for messages."""
        what = f"{len(self.files)} slices" if self.kind is None else f"{self.kind}, not an image"
        return f"{self.uid} ({self.description or 'no description'}, {self.modality}, {what})"


def _header(path: Path) -> Any:
    import pydicom

    try:
        return pydicom.dcmread(path, stop_before_pixels=True)
    except Exception as err:  # pydicom raises many kinds for a broken file
        raise InputFileError(path, f"cannot read as DICOM ({err})") from err


def _kind(ds: Any) -> str | None:
    sop = ds.get("SOPClassUID")
    name = getattr(sop, "name", str(sop)) if sop is not None else "unknown object"
    modality = str(ds.get("Modality", ""))
    if modality in NON_IMAGE_MODALITIES or "Rows" not in ds or "Columns" not in ds:
        return str(name)
    return None


def list_series(folder: str | Path) -> list[SeriesInfo]:
    """The series in ``folder`` (files directly inside), in UID order.

    Raises:
        InputFileError: no DICOM file in the folder, or one cannot be read.
    """
    import SimpleITK as sitk

    folder = Path(folder)
    files = dicom_files(folder)
    if not files:
        raise InputFileError(folder, "folder contains no DICOM files")
    by_uid: dict[str, list[tuple[Path, Any]]] = defaultdict(list)
    for path in files:
        ds = _header(path)
        by_uid[str(ds.get("SeriesInstanceUID", ""))].append((path, ds))
    # GDCM's own grouping names the image series; objects it does not list are not images
    with locale_kept():
        gdcm_ids = set(sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder)))
    out = []
    for uid in sorted(by_uid):
        members = by_uid[uid]
        first = members[0][1]
        kinds = {_kind(ds) for _, ds in members}
        kind = next((k for k in kinds if k is not None), None)
        if kind is None and uid not in gdcm_ids:
            kind = str(getattr(first.get("SOPClassUID"), "name", "object without pixel data"))
        out.append(
            SeriesInfo(
                uid=uid,
                description=str(first.get("SeriesDescription", "")),
                modality=str(first.get("Modality", "")),
                files=tuple(p for p, _ in members),
                kind=kind,
            )
        )
    return out


def select_series(folder: str | Path, series: str | None = None) -> SeriesInfo:
    """The one image series of ``folder``, or the one whose UID is ``series``.

    Raises:
        InputFileError: no image series (the message says what the objects are), several image
            series and no ``series`` (the message lists each: UID, description, slices), or
            ``series`` is not in the folder or is not an image.
    """
    folder = Path(folder)
    found = list_series(folder)
    if series is not None:
        match = [s for s in found if s.uid == series]
        if not match:
            listed = "; ".join(s.line() for s in found)
            raise InputFileError(folder, f"no series {series} here; the folder holds: {listed}")
        if match[0].kind is not None:
            raise InputFileError(
                folder, f"series {series} is a {match[0].kind}, not an image series"
            )
        return match[0]
    images = [s for s in found if s.kind is None]
    if not images:
        kinds = "; ".join(f"{s.kind} ({s.uid})" for s in found)
        raise InputFileError(folder, f"no image series, only non-image DICOM: {kinds}")
    if len(images) > 1:
        listed = "; ".join(s.line() for s in images)
        raise InputFileError(
            folder, f"{len(images)} image series, pick one with --series UID: {listed}"
        )
    return images[0]


def _floats(ds: Any, keyword: str, n: int, path: Path) -> np.ndarray:
    value = ds.get(keyword)
    try:
        out = np.asarray([float(v) for v in value], dtype=np.float64)
    except (TypeError, ValueError):
        out = np.zeros(0)
    if out.shape != (n,) or not np.all(np.isfinite(out)):
        raise InputFileError(path, f"missing or invalid {keyword} ({value!r})")
    return out


def sorted_slices(series: SeriesInfo) -> list[Path]:
    """The files of an image series in the order of their positions along the slice normal,
    after checking the headers describe one regular grid.

    Raises:
        InputFileError: mixed image sizes, mixed orientations, two slices at the same position,
            a gantry tilt, a missing slice or uneven spacing (one line naming the series).
    """
    headers = [(p, _header(p)) for p in series.files]
    where = f"series {series.uid}"
    folder = series.files[0].parent
    sizes = {(int(ds.Rows), int(ds.Columns)) for _, ds in headers}
    if len(sizes) > 1:
        shown = ", ".join(f"{c}x{r}" for r, c in sorted(sizes))
        raise InputFileError(folder, f"{where}: mixed image sizes ({shown}), not one volume")
    if any(int(ds.get("NumberOfFrames", 1) or 1) > 1 for _, ds in headers):
        raise InputFileError(folder, f"{where}: multi-frame DICOM is not supported")
    orientations = [_floats(ds, "ImageOrientationPatient", 6, p) for p, ds in headers]
    row, col = orientations[0][:3], orientations[0][3:]
    if any(np.max(np.abs(o - orientations[0])) > GEOMETRY_TOLERANCE for o in orientations):
        raise InputFileError(folder, f"{where}: slices have different orientations")
    normal = np.cross(row, col)
    positions = np.stack([_floats(ds, "ImagePositionPatient", 3, p) for p, ds in headers])
    along = positions @ normal
    order = np.argsort(along, kind="stable")
    along, positions = along[order], positions[order]
    files = [headers[i][0] for i in order]
    if len(files) < 2:
        return files
    gaps = np.diff(along)
    if np.min(gaps) <= GEOMETRY_TOLERANCE:
        i = int(np.argmin(gaps))
        raise InputFileError(
            folder,
            f"{where}: two slices at the same position ({files[i].name}, {files[i + 1].name}); "
            "several phases or echoes in one series are not one volume",
        )
    shift = positions[-1] - positions[0]
    sideways = shift - (shift @ normal) * normal
    tilt = float(np.degrees(np.arctan2(np.linalg.norm(sideways), shift @ normal)))
    if np.linalg.norm(sideways) / (shift @ normal) > GEOMETRY_TOLERANCE:
        raise InputFileError(
            folder,
            f"{where}: gantry tilt of {tilt:.2f} degrees (slices are sheared, not a regular "
            "grid); resample it to an untilted grid first",
        )
    spacing = float(np.median(gaps))
    # Positions are decimal strings that scanners round (often to 0.01 mm or coarser), so the
    # gaps of a regular series wobble by up to twice that rounding: a gap counts as regular
    # within SLICE_GAP_TOLERANCE of the spacing (or GEOMETRY_TOLERANCE in mm, if larger).
    allowed = max(GEOMETRY_TOLERANCE, SLICE_GAP_TOLERANCE * spacing)
    if np.max(np.abs(gaps - spacing)) > allowed:
        i = int(np.argmax(np.abs(gaps - spacing)))
        ratio = gaps[i] / spacing
        if abs(ratio - round(ratio)) * spacing <= allowed and round(ratio) >= 2:
            raise InputFileError(
                folder,
                f"{where}: {round(ratio) - 1} slice(s) missing between {files[i].name} and "
                f"{files[i + 1].name} (gap {gaps[i]:.3f} mm, spacing {spacing:.3f} mm)",
            )
        raise InputFileError(
            folder,
            f"{where}: uneven slice spacing ({float(np.min(gaps)):.3f} to "
            f"{float(np.max(gaps)):.3f} mm), not a regular grid",
        )
    return files


def read_series(files: list[Path]) -> Any:
    """A ``SimpleITK.Image`` of the checked, sorted slice files (one copy of the volume).

    Raises:
        InputFileError: GDCM cannot read the pixel data.
    """
    import SimpleITK as sitk

    reader = sitk.ImageSeriesReader()
    reader.SetFileNames([str(f) for f in files])
    try:
        with locale_kept():
            return reader.Execute()
    except RuntimeError as err:
        text = str(err).strip().splitlines()
        raise InputFileError(
            files[0].parent, f"cannot read the DICOM pixel data ({text[-1] if text else err})"
        ) from err
