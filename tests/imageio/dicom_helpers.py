"""Build small DICOM series for the tests with SimpleITK (and pydicom for the broken ones)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import SimpleITK as sitk
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
BASIC_TEXT_SR = "1.2.840.10008.5.1.4.1.1.88.11"


def _ds(values: Any, digits: int = 6) -> str:
    return "\\".join(f"{float(v):.{digits}f}" for v in values)


def write_series(
    folder: Path,
    image: Any,
    series_uid: str | None = None,
    description: str = "test series",
    study_uid: str | None = None,
    frame_uid: str | None = None,
    prefix: str = "",
) -> list[Path]:
    """Write the 3D ``SimpleITK.Image`` ``image`` (int16) as one file per slice ``k``, with the
    slice's position and the image's row/column directions; returns the files in ``k`` order."""
    folder.mkdir(parents=True, exist_ok=True)
    series_uid = series_uid or generate_uid()
    study_uid = study_uid or generate_uid()
    frame_uid = frame_uid or generate_uid()
    direction = np.asarray(image.GetDirection()).reshape(3, 3)
    orientation = _ds(list(direction[:, 0]) + list(direction[:, 1]), 8)
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
            "0010|0010": "Test^Patient",
            "0010|0020": "P001",
            "0020|000d": study_uid,
            "0020|000e": series_uid,
            "0020|0052": frame_uid,
            "0020|0011": "1",
            "0020|0013": str(k + 1),
            "0020|0037": orientation,
            "0020|0032": _ds(image.TransformIndexToPhysicalPoint((0, 0, k))),
            "0018|0050": f"{image.GetSpacing()[2]:.6f}",
            "0028|1050": "40",
            "0028|1051": "400",
        }
        for tag, value in tags.items():
            part.SetMetaData(tag, value)
        path = folder / f"{prefix}slice{k:03d}.dcm"
        writer.SetFileName(str(path))
        writer.Execute(part)
        files.append(path)
    return files


def itk_image(data: np.ndarray, spacing: Any, origin: Any, direction: np.ndarray) -> Any:
    """A SimpleITK image of ``data`` ``(X, Y, Z)`` with LPS geometry."""
    image = sitk.GetImageFromArray(np.ascontiguousarray(data.transpose(2, 1, 0)))
    image.SetSpacing([float(s) for s in spacing])
    image.SetOrigin([float(o) for o in origin])
    image.SetDirection([float(d) for d in np.asarray(direction).reshape(-1)])
    return image


def edit(path: Path, **attributes: Any) -> None:
    """Set DICOM attributes (by keyword) of one file in place."""
    ds = pydicom.dcmread(path)
    for key, value in attributes.items():
        setattr(ds, key, value)
    ds.save_as(path)


def write_report(path: Path, series_uid: str | None = None) -> Path:
    """A Basic Text SR (a report: no pixel data)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = BASIC_TEXT_SR
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = BASIC_TEXT_SR
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "SR"
    ds.SeriesInstanceUID = series_uid or generate_uid()
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesDescription = "radiology report"
    ds.PatientID = "P001"
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path
