"""Read any scan as a NIfTI-style image: voxels ``(X, Y, Z[, C])`` plus a RAS+ affine.

NIfTI files open lazily with nibabel (as before: no voxel is read until asked). NRRD, MetaImage
and DICOM series are read with SimpleITK and wrapped, without copying the voxels, in an in-memory
``nibabel.Nifti1Image`` whose affine is the RAS+ form of the ITK geometry
(:func:`segattn.imageio.geometry.affine_from_itk`). So every later step (MONAI preprocessing,
inverse transforms, label maps with the input geometry) is the NIfTI path, and the same scan in
any format gives the same labels.
"""

from __future__ import annotations

import gzip
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from segattn.errors import InputFileError
from segattn.imageio.dicom import read_series, select_series, sorted_slices
from segattn.imageio.geometry import affine_from_itk
from segattn.imageio.naming import IMAGE_ENDINGS, file_format, is_dicom_folder


@dataclass(frozen=True)
class Scan:
    """One opened scan.

    Attributes:
        path: the file, or the series folder.
        format: ``"nifti"``, ``"nrrd"``, ``"mha"`` or ``"dicom"``.
        image: the voxels and RAS+ affine as a nibabel image (lazy for NIfTI files).
        series_uid: the DICOM SeriesInstanceUID (DICOM only).
        slices: the DICOM slice files in position order (DICOM only).
    """

    path: Path
    format: str
    image: nib.Nifti1Image
    series_uid: str | None = None
    slices: tuple[Path, ...] = ()

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.image.shape)

    @property
    def affine(self) -> np.ndarray:
        return np.asarray(self.image.affine)


class _Owner:
    """Keeps a SimpleITK image alive under a numpy view of its buffer (no copy)."""

    def __init__(self, image: Any, view: np.ndarray) -> None:
        self.image = image
        self.__array_interface__ = view.__array_interface__


def sitk_to_nifti(image: Any) -> nib.Nifti1Image:
    """Wrap a 3D ``SimpleITK.Image`` (scalar or vector) as a ``Nifti1Image`` sharing its voxels.

    The array is ``(X, Y, Z)`` or ``(X, Y, Z, C)`` for vector pixels (channels last, as 4D NIfTI),
    a transposed view of ITK's buffer; the affine is RAS+.
    """
    import SimpleITK as sitk

    if image.GetDimension() != 3:
        raise ValueError(f"expected a 3D image, got {image.GetDimension()}D")
    view = sitk.GetArrayViewFromImage(image)  # (Z, Y, X[, C]), valid while `image` lives
    array = np.asarray(_Owner(image, view))
    array = array.transpose(2, 1, 0, 3) if array.ndim == 4 else array.transpose(2, 1, 0)
    affine = affine_from_itk(image.GetSpacing(), image.GetOrigin(), image.GetDirection())
    # nibabel wants 64-bit integer data types spelled out
    dtype = array.dtype if array.dtype.kind in "iu" and array.dtype.itemsize == 8 else None
    out = nib.Nifti1Image(array, affine, dtype=dtype)
    out.header.set_qform(affine, code=1)
    out.header.set_sform(affine, code=1)
    out.header.set_xyzt_units("mm")
    return out


def read_scan(path: str | Path, series: str | None = None) -> Scan:
    """Open one scan: a NIfTI/NRRD/MetaImage file or a folder holding a DICOM series.

    NIfTI opens lazily (header only); the other formats are read whole, once (peak memory: one
    copy of the volume plus what the reader itself buffers, see the README).

    Args:
        path: the file or the series folder.
        series: SeriesInstanceUID to pick when the folder holds several image series.

    Returns:
        the :class:`Scan`; ``scan.image`` is 3D, or 4D with channels last.

    Raises:
        InputFileError: missing path, unknown format, unreadable file, not 3D/4D, non-finite
            affine, or a DICOM folder that is not one regular image series (see
            :mod:`segattn.imageio.dicom`).
    """
    path = Path(path)
    if not path.exists():
        raise InputFileError(path, "no such file or folder")
    if path.is_dir():
        if not is_dicom_folder(path):
            raise InputFileError(path, "folder holds no DICOM files (not a DICOM series)")
        chosen = select_series(path, series)
        slices = sorted_slices(chosen)
        image = sitk_to_nifti(read_series(slices))
        scan = Scan(path, "dicom", image, chosen.uid, tuple(slices))
    elif not path.is_file():
        raise InputFileError(path, "not a regular file")
    else:
        fmt = file_format(path)
        if fmt is None:
            raise InputFileError(
                path, f"not an image file name (expected {', '.join(IMAGE_ENDINGS)})"
            )
        image = open_nifti(path) if fmt == "nifti" else _read_itk(path)
        scan = Scan(path, fmt, image)
    _check_image(path, scan.image)
    return scan


def open_nifti(path: str | Path) -> nib.Nifti1Image:
    """``nib.load`` (lazy: no voxel data read) for a NIfTI-1 or NIfTI-2 file.

    Raises:
        InputFileError: the file cannot be read or is not a NIfTI image.
    """
    try:
        img = nib.load(path)
    except (nib.filebasedimages.ImageFileError, OSError, EOFError, ValueError, zlib.error) as err:
        raise InputFileError(path, f"cannot read as NIfTI ({describe_error(err)})") from err
    if not isinstance(img, nib.Nifti1Image | nib.Nifti2Image):
        raise InputFileError(path, f"not a NIfTI-1/2 image ({type(img).__name__})")
    return img


def _read_itk(path: Path) -> nib.Nifti1Image:
    import SimpleITK as sitk

    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as err:
        lines = [t for t in str(err).strip().splitlines() if t.strip()]
        raise InputFileError(path, f"cannot read ({lines[-1].strip() if lines else err})") from err
    if image.GetDimension() != 3:
        raise InputFileError(path, f"expected a 3D image, got {image.GetDimension()}D")
    return sitk_to_nifti(image)


def _check_image(path: Path, img: nib.Nifti1Image) -> None:
    shape = img.shape
    if len(shape) not in (3, 4):
        raise InputFileError(path, f"expected a 3D or 4D image, got shape {shape}")
    if min(shape) < 1:
        raise InputFileError(path, f"empty image, shape {shape}")
    if not np.all(np.isfinite(img.affine)):
        raise InputFileError(path, "the header's affine contains NaN or infinite values")


def channel_count(img: nib.Nifti1Image) -> int:
    """Channels of an image: 1 for 3D, the 4th dimension for 4D."""
    return 1 if len(img.shape) == 3 else int(img.shape[3])


def read_label_scan(path: str | Path, series: str | None = None) -> Scan:
    """Open a label map (any format); 3D, or 4D with a 4th dimension of 1.

    Raises:
        InputFileError: see :func:`read_scan`, or a 4D image with several volumes.
    """
    scan = read_scan(path, series)
    if len(scan.shape) == 4 and scan.shape[3] != 1:
        raise InputFileError(path, f"a label map must be 3D, got shape {scan.shape}")
    return scan


def label_array(img: nib.Nifti1Image, path: str | Path) -> np.ndarray:
    """The integer voxels of a label map (scaling applied), shape ``img.shape[:3]``, int64.

    Raises:
        InputFileError: truncated/corrupt data, or non-integer / non-finite values.
    """
    try:
        data = np.asanyarray(img.dataobj)
    except (OSError, EOFError, ValueError, zlib.error) as err:
        raise InputFileError(path, f"cannot read the image data ({describe_error(err)})") from err
    data = data.reshape(img.shape[:3])
    if not np.issubdtype(data.dtype, np.integer):
        if not np.all(np.isfinite(data)):
            raise InputFileError(path, "label map contains NaN or infinite values")
        rounded = np.rint(data)
        if not np.array_equal(rounded, data):
            raise InputFileError(path, "label map contains non-integer values")
        data = rounded
    return data.astype(np.int64, copy=False)


def describe_error(err: BaseException) -> str:
    """A short text for a reader error (corrupt/truncated gzip said so)."""
    if isinstance(err, gzip.BadGzipFile | zlib.error | EOFError):
        return f"corrupt or truncated file: {err}" if str(err) else "corrupt or truncated file"
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
