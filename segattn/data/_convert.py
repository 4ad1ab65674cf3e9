"""Steps the converters of distributed data sets (:mod:`segattn.data.malc`,
:mod:`segattn.data.visceral`) share: reading a source NIfTI and copying a scan unchanged."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import nibabel as nib

from segattn.data.layout import nifti_ending
from segattn.errors import InputFileError
from segattn.fileio import atomic_path, copy_atomic


def load_nifti(path: Path) -> nib.Nifti1Image:
    """``nib.load`` (lazy: no voxel data read) for a NIfTI-1 or NIfTI-2 file.

    Raises:
        InputFileError: the file cannot be read or is not a NIfTI image.
    """
    try:
        img = nib.load(path)
    except Exception as err:  # nibabel raises many kinds for a broken file
        raise InputFileError(path, f"cannot read as NIfTI ({err})") from err
    if not isinstance(img, nib.Nifti1Image | nib.Nifti2Image):
        raise InputFileError(path, f"not a NIfTI image ({type(img).__name__})")
    return img


def copy_as_nii_gz(src: Path, dst: Path) -> None:
    """Write ``src``'s bytes as ``dst`` (``.nii.gz``) atomically: a ``.nii.gz`` is copied byte for
    byte, a ``.nii`` is gzip-compressed (fast level 1, no name or time stamp in the gzip header,
    so the same input gives the same bytes)."""
    if nifti_ending(src) == ".nii.gz":
        copy_atomic(src, dst)
        return
    with (
        atomic_path(dst) as tmp,
        src.open("rb") as raw,
        tmp.open("wb") as out,
        gzip.GzipFile(filename="", mode="wb", fileobj=out, compresslevel=1, mtime=0) as packed,
    ):
        shutil.copyfileobj(raw, packed, length=1 << 20)
