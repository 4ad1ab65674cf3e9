"""Write a 3D image as a DICOM CT series (one file per slice), e.g. to try the DICOM path on a
NIfTI scan or to build test series. Not a clinical export: the patient is ``Anonymous``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from segattn.errors import InputFileError
from segattn.imageio._locale import locale_kept

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"


def _decimals(values: Any, digits: int) -> str:
    return "\\".join(f"{float(v):.{digits}f}" for v in values)


def write_dicom_series(
    image: Any,
    folder: str | Path,
    series_uid: str | None = None,
    description: str = "segattn series",
    prefix: str = "",
) -> list[Path]:
    """Write the 3D ``SimpleITK.Image`` ``image`` as one int16 CT file per slice ``k``.

    Each file carries the slice's position (``ImagePositionPatient``), the image's row and column
    directions (``ImageOrientationPatient``), the pixel spacing and shared study, series and
    frame-of-reference UIDs. Files are written straight into ``folder`` (not atomically: a series
    is many files).

    Args:
        image: 3D image; cast to int16.
        folder: created if missing.
        series_uid: SeriesInstanceUID (new one if None).
        description: SeriesDescription.
        prefix: start of each file name (``{prefix}slice000.dcm`` ...).

    Returns:
        the files in slice order ``k``.

    Raises:
        InputFileError: the image is not 3D, or a file cannot be written.
    """
    import SimpleITK as sitk
    from pydicom.uid import generate_uid

    folder = Path(folder)
    if image.GetDimension() != 3:
        dims = image.GetDimension()
        raise InputFileError(folder, f"a DICOM series needs a 3D image, got {dims}D")
    image = sitk.Cast(image, sitk.sitkInt16)
    folder.mkdir(parents=True, exist_ok=True)
    series_uid = series_uid or generate_uid()
    study_uid, frame_uid = generate_uid(), generate_uid()
    direction = np.asarray(image.GetDirection()).reshape(3, 3)
    orientation = _decimals(list(direction[:, 0]) + list(direction[:, 1]), 8)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    files = []
    for k in range(image.GetSize()[2]):
        part = image[:, :, k]
        tags = {
            "0008|0016": CT_IMAGE_STORAGE,
            "0008|0018": generate_uid(),
            "0008|0060": "CT",
            "0008|103e": description,
            "0010|0010": "Anonymous^",
            "0010|0020": "ANON",
            "0020|000d": study_uid,
            "0020|000e": series_uid,
            "0020|0052": frame_uid,
            "0020|0011": "1",
            "0020|0013": str(k + 1),
            "0020|0037": orientation,
            "0020|0032": _decimals(image.TransformIndexToPhysicalPoint((0, 0, k)), 6),
            "0018|0050": f"{image.GetSpacing()[2]:.6f}",
        }
        for tag, value in tags.items():
            part.SetMetaData(tag, value)
        path = folder / f"{prefix}slice{k:03d}.dcm"
        writer.SetFileName(str(path))
        try:
            with locale_kept():
                writer.Execute(part)
        except RuntimeError as err:
            reason = str(err).strip().splitlines()[-1]
            raise InputFileError(path, f"cannot write: {reason}") from err
        files.append(path)
    return files
