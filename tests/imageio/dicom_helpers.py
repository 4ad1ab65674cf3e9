"""Build small DICOM series for the tests with SimpleITK (and pydicom for the broken ones)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import SimpleITK as sitk
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from segattn.imageio import write_dicom_series

BASIC_TEXT_SR = "1.2.840.10008.5.1.4.1.1.88.11"


def write_series(folder: Path, image: Any, **kwargs: Any) -> list[Path]:
    """:func:`segattn.imageio.write_dicom_series` with the arguments in test order."""
    return write_dicom_series(image, folder, **kwargs)


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
