"""Write images and label maps atomically (through :mod:`segattn.fileio`), in any output format,
with the reference scan's exact geometry."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from segattn.errors import InputFileError
from segattn.fileio import atomic_path, save_nifti_atomic
from segattn.imageio.geometry import itk_from_affine
from segattn.imageio.naming import file_format


def label_dtype(num_classes: int) -> type[np.integer]:
    """uint8 for up to 256 classes (labels 0..255), int16 otherwise."""
    return np.uint8 if num_classes <= 256 else np.int16


def label_image(
    labels: np.ndarray,
    reference: nib.Nifti1Image,
    num_classes: int,
    description: str | None = None,
) -> nib.Nifti1Image:
    """A label-map NIfTI image on ``reference``'s exact grid and header geometry.

    The header is the reference's (affine, qform/sform matrices and codes, units, ...) with a 3D
    shape, an integer data type (:func:`label_dtype`), no intensity scaling (scl_slope 1,
    scl_inter 0) and the display range reset; ``description`` (if given) replaces the header's
    ``descrip`` (79 bytes at most).

    Raises:
        ValueError: ``labels`` is not on the reference grid.
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
    if description is not None:
        out.header["descrip"] = description.encode()[:79]
    return out


def to_sitk(data: np.ndarray, affine: np.ndarray) -> Any:
    """A ``SimpleITK.Image`` of ``data`` ``(X, Y, Z)`` with the LPS form of the RAS+ ``affine``."""
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(np.ascontiguousarray(np.asarray(data).transpose(2, 1, 0)))
    spacing, origin, direction = itk_from_affine(affine)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    image.SetDirection(direction)
    return image


def write_image(image: nib.Nifti1Image, path: str | Path) -> None:
    """Write a 3D nibabel image atomically; the ending of ``path`` picks NIfTI, NRRD or MetaImage
    (``.nhdr``/``.mhd`` are refused: they are two files, not one atomic write).

    Raises:
        InputFileError: unknown ending, or the write failed.
    """
    path = Path(path)
    fmt = file_format(path)
    try:
        if fmt == "nifti":
            save_nifti_atomic(image, path)
        elif fmt in ("nrrd", "mha") and path.suffix.lower() in (".nrrd", ".mha"):
            import SimpleITK as sitk

            itk_image = to_sitk(np.asanyarray(image.dataobj), image.affine)
            with atomic_path(path) as tmp:
                sitk.WriteImage(itk_image, str(tmp), useCompression=True)
        else:
            raise InputFileError(path, "cannot write this format (use .nii.gz, .nrrd or .mha)")
    except OSError as err:
        raise InputFileError(path, f"cannot write: {err.strerror or err}") from err
    except RuntimeError as err:  # SimpleITK write error
        raise InputFileError(path, f"cannot write: {str(err).strip().splitlines()[-1]}") from err


def write_label_map(
    labels: np.ndarray, reference: nib.Nifti1Image, path: str | Path, num_classes: int
) -> nib.Nifti1Image:
    """Write ``labels`` ``(X, Y, Z)`` on ``reference``'s grid to ``path`` (format by ending).

    Returns:
        the label image that was written (NIfTI form).

    Raises:
        InputFileError: unknown ending or failed write.
    """
    image = label_image(labels, reference, num_classes)
    write_image(image, path)
    return image
