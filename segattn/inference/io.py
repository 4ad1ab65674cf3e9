"""NIfTI file handling for inference: naming, input checks, label-map writing, atomic writes.

Every problem with one file raises :class:`segattn.errors.InputFileError`, whose message starts
with the path, so the command line can print one clear line per bad file.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np

from segattn.data.layout import (  # noqa: F401 (re-exported for inference callers)
    NIFTI_ENDINGS,
    nifti_ending,
    split_channel_suffix,
    strip_nifti_ending,
)
from segattn.errors import InputFileError


def output_name(path: str | Path) -> str:
    """Output file name of an input image: nnU-Net's ``_0000`` suffix stripped, ending kept.

    ``CASE_0000.nii.gz`` -> ``CASE.nii.gz`` (the labelsTs name); ``scan.nii`` -> ``scan.nii``.
    """
    stem = strip_nifti_ending(path)
    case, channel = split_channel_suffix(stem)
    ending = nifti_ending(path) or ".nii.gz"
    return (case if channel == 0 else stem) + ending


def list_nifti(folder: str | Path) -> list[Path]:
    """The ``.nii``/``.nii.gz`` files directly inside ``folder``, sorted, hidden files skipped.

    Raises:
        InputFileError: the folder holds no NIfTI file.
    """
    folder = Path(folder)
    files = sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and nifti_ending(p) is not None
    )
    if not files:
        raise InputFileError(folder, "folder contains no .nii or .nii.gz files")
    return files


def load_nifti_header(path: str | Path) -> nib.Nifti1Image:
    """Open a NIfTI file lazily (header only) and check that it is a 3D or 4D image.

    Raises:
        InputFileError: missing, not a file, wrong ending, unreadable header, unsupported shape.
    """
    path = Path(path)
    if not path.exists():
        raise InputFileError(path, "no such file or folder")
    if not path.is_file():
        raise InputFileError(path, "not a regular file")
    if nifti_ending(path) is None:
        raise InputFileError(path, "not a NIfTI file name (expected .nii or .nii.gz)")
    try:
        img = nib.load(path)
    except (nib.filebasedimages.ImageFileError, OSError, EOFError, ValueError, zlib.error) as err:
        raise InputFileError(path, f"cannot read as NIfTI ({_describe(err)})") from err
    if not isinstance(img, nib.Nifti1Image | nib.Nifti2Image):
        raise InputFileError(path, f"not a NIfTI-1/2 image ({type(img).__name__})")
    shape = img.shape
    if len(shape) not in (3, 4):
        raise InputFileError(path, f"expected a 3D or 4D image, got shape {shape}")
    if min(shape) < 1:
        raise InputFileError(path, f"empty image, shape {shape}")
    if not np.all(np.isfinite(img.affine)):
        raise InputFileError(path, "the header's affine contains NaN or infinite values")
    return img


def channel_count(img: nib.Nifti1Image) -> int:
    """Channels of an image: 1 for 3D, the 4th dimension for 4D."""
    return 1 if len(img.shape) == 3 else int(img.shape[3])


def read_label_map(path: str | Path) -> nib.Nifti1Image:
    """Open a label map lazily; 3D, or 4D with a 4th dimension of 1.

    Raises:
        InputFileError: see :func:`load_nifti_header`, or a 4D image with several volumes.
    """
    img = load_nifti_header(path)
    if len(img.shape) == 4 and img.shape[3] != 1:
        raise InputFileError(path, f"a label map must be 3D, got shape {img.shape}")
    return img


def label_array(img: nib.Nifti1Image, path: str | Path) -> np.ndarray:
    """The integer voxels of a label map (scaling applied), shape ``img.shape[:3]``.

    Raises:
        InputFileError: truncated/corrupt data, or non-integer / non-finite values.
    """
    try:
        data = np.asanyarray(img.dataobj)
    except (OSError, EOFError, ValueError, zlib.error) as err:
        raise InputFileError(path, f"cannot read the image data ({_describe(err)})") from err
    data = data.reshape(img.shape[:3])
    if not np.issubdtype(data.dtype, np.integer):
        if not np.all(np.isfinite(data)):
            raise InputFileError(path, "label map contains NaN or infinite values")
        rounded = np.rint(data)
        if not np.array_equal(rounded, data):
            raise InputFileError(path, "label map contains non-integer values")
        data = rounded
    return data.astype(np.int64, copy=False)


def label_dtype(num_classes: int) -> type[np.integer]:
    """uint8 for up to 256 classes (labels 0..255), int16 otherwise."""
    return np.uint8 if num_classes <= 256 else np.int16


def label_image(
    labels: np.ndarray, reference: nib.Nifti1Image, num_classes: int
) -> nib.Nifti1Image:
    """A label-map image on ``reference``'s exact grid and header geometry.

    The header is the reference's (affine, qform/sform matrices and codes, units, ...) with a 3D
    shape, an integer data type, no intensity scaling (scl_slope 1, scl_inter 0) and the display
    range reset.
    """
    if labels.shape != tuple(reference.shape[:3]):
        raise ValueError(f"labels shape {labels.shape} != reference grid {reference.shape[:3]}")
    dtype = label_dtype(num_classes)
    header = reference.header.copy()
    header.set_data_dtype(dtype)
    img_class = type(reference)
    out = img_class(np.asarray(labels, dtype=dtype), reference.affine, header=header)
    out.header.set_slope_inter(1.0, 0.0)
    out.header["cal_min"] = 0
    out.header["cal_max"] = 0
    out.header.set_qform(reference.header.get_qform(), code=int(reference.header["qform_code"]))
    out.header.set_sform(reference.header.get_sform(), code=int(reference.header["sform_code"]))
    return out


def _describe(err: BaseException) -> str:
    if isinstance(err, gzip.BadGzipFile | zlib.error | EOFError):
        return f"corrupt or truncated file: {err}" if str(err) else "corrupt or truncated file"
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return text
