"""Inference-side names for image I/O; everything lives in :mod:`segattn.imageio`.

Kept so existing imports keep working: ``load_nifti_header`` opens any supported scan (NIfTI
lazily) and returns its NIfTI-style image; every problem raises
:class:`segattn.errors.InputFileError`, whose message starts with the path.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib

from segattn.data.layout import (  # noqa: F401 (NIfTI-only names, kept for existing callers)
    NIFTI_ENDINGS,
    nifti_ending,
    strip_nifti_ending,
)
from segattn.imageio import (  # noqa: F401 (re-exported for inference callers)
    IMAGE_ENDINGS,
    channel_count,
    image_ending,
    label_array,
    label_dtype,
    label_image,
    list_scans,
    output_name,
    read_label_scan,
    read_scan,
    split_channel_suffix,
    strip_ending,
)


def list_nifti(folder: str | Path) -> list[Path]:
    """The scans in ``folder`` (:func:`segattn.imageio.list_scans`: every image format and DICOM
    series, no longer only NIfTI).

    Raises:
        InputFileError: nothing to read in the folder.
    """
    return list_scans(folder)


def load_nifti_header(path: str | Path) -> nib.Nifti1Image:
    """Open a scan (NIfTI lazily, header only) and check that it is a 3D or 4D image.

    Raises:
        InputFileError: missing, unknown format, unreadable header, unsupported shape.
    """
    return read_scan(path).image


def read_label_map(path: str | Path) -> nib.Nifti1Image:
    """Open a label map (any format); 3D, or 4D with a 4th dimension of 1.

    Raises:
        InputFileError: see :func:`segattn.imageio.read_scan`, or several volumes.
    """
    return read_label_scan(path).image
