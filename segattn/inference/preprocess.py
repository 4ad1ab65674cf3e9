"""Run a checkpoint's MONAI preprocessing on one scan with fewer full-volume copies.

The chain from :func:`segattn.data.transforms.preprocess_transforms` is run step by step. The
intensity steps that MONAI computes out of place (``ScaleIntensityRanged`` and a plain
``NormalizeIntensityd``: 2-3 float32 volume copies at once, 420 MB each for a 512 x 512 x 400 CT)
are replayed in place with the same operations in the same order, so the values are bit-identical
(tested); everything else is MONAI's own step. The intensity kinds ``ct`` (HU window to [0, 1])
and ``ct_fitted`` (clip to the fitted percentiles, z-score with the fitted mean and std) are both
one ``ScaleIntensityRanged``, so a fitted CT normalisation is replayed exactly like a window. The
NaN/inf check runs slab by slab instead of on a full boolean volume. Scans already opened by
:func:`segattn.imageio.read_scan` (NRRD, MetaImage, DICOM: in memory as NIfTI-style images) skip
the file loading and go through MONAI's own NIfTI reader step on the in-memory image, so they get
the same metadata as a NIfTI file.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import torch
from monai.data import MetaTensor, NibabelReader
from monai.transforms import Compose, EnsureChannelFirst, NormalizeIntensityd, ScaleIntensityRanged
from monai.transforms.io.array import switch_endianness
from monai.utils import ImageMetaKey, convert_to_dst_type, get_equivalent_dtype

from segattn.errors import InputFileError

_CHECK_ROWS = 8  # slices per NaN/inf check step


def run_preprocessing(
    chain: Compose, paths: Sequence[Path], images: Sequence[nib.Nifti1Image] | None = None
) -> dict[str, Any]:
    """Load ``paths`` (one file or channel files) and apply ``chain`` to key ``"image"``.

    Args:
        chain: from :func:`segattn.data.transforms.preprocess_transforms` (``LoadImaged`` first).
        paths: the scans, one per channel (or one 4D scan).
        images: the scans already opened (one per path); None: ``chain`` loads the files.

    Raises:
        InputFileError: unreadable image data, NaN or infinite voxels.
    """
    source: str | list[str] = str(paths[0]) if len(paths) == 1 else [str(p) for p in paths]
    try:
        if images is None:
            data = chain({"image": source}, start=0, end=1)  # LoadImaged only
        else:
            data = {"image": load_opened(chain.transforms[0], images, paths)}
    except Exception as err:  # MONAI wraps reader errors in RuntimeError
        raise InputFileError(paths[0], f"cannot read the image data ({_root(err)})") from err
    if not all_finite(data["image"]):
        raise InputFileError(paths[0], "image contains NaN or infinite voxel values")
    for i, step in enumerate(chain.transforms[1:], start=1):
        if not _in_place(step, data):
            data = dict(chain(data, start=i, end=i + 1))
    return data


def load_opened(step: Any, images: Sequence[nib.Nifti1Image], paths: Sequence[Path]) -> MetaTensor:
    """What ``step`` (the chain's ``LoadImaged``) returns for NIfTI files, from opened images.

    The same steps as ``monai.transforms.LoadImage`` with its own NIfTI reader: reader data and
    metadata, the loader's dtype, little-endian metadata, the file name, pruned metadata,
    optional channel-first.
    """
    loader = step._loader
    reader = next(r for r in loader.readers if isinstance(r, NibabelReader))
    reader.filenames = [str(p) for p in paths]
    array, meta = reader.get_data(images[0] if len(images) == 1 else list(images))
    array = convert_to_dst_type(array, dst=array, dtype=loader.dtype)[0]
    if isinstance(array, np.ndarray) and not array.flags.writeable:
        # still the reader's read-only buffer (already float32): later steps work in place,
        # and the opened scan may be preprocessed again by another chain
        array = array.copy()
    meta = switch_endianness(meta, "<")
    meta[ImageMetaKey.FILENAME_OR_OBJ] = str(paths[0])
    image = MetaTensor.ensure_torch_and_prune_meta(
        array, meta, loader.simple_keys, pattern=loader.pattern, sep=loader.sep
    )
    if loader.ensure_channel_first:
        image = EnsureChannelFirst()(image, meta_dict=meta)
    return image


def all_finite(image: torch.Tensor) -> bool:
    """True if no voxel is NaN or infinite (checked a few slices at a time)."""
    x = image.as_subclass(torch.Tensor) if isinstance(image, torch.Tensor) else image
    if not x.is_floating_point():
        return True
    last = x.shape[-1]
    return all(
        bool(torch.isfinite(x[..., i : i + _CHECK_ROWS]).all()) for i in range(0, last, _CHECK_ROWS)
    )


def _in_place(step: Any, data: dict[str, Any]) -> bool:
    """Apply ``step`` to ``data["image"]`` in place if it is one we replay; True if done."""
    if list(getattr(step, "keys", ())) != ["image"]:
        return False
    img = data["image"]
    if not isinstance(img, torch.Tensor) or img.dtype != torch.float32:
        return False
    x = img.as_subclass(torch.Tensor)  # same storage
    if isinstance(step, ScaleIntensityRanged):
        s = step.scaler
        if s.a_max - s.a_min == 0.0 or s.b_min is None or s.b_max is None or not s.clip:
            return False
        if not _float32(s.dtype):
            return False
        # MONAI: img = (img - a_min) / (a_max - a_min); img = img * (b_max - b_min) + b_min; clip
        x.sub_(s.a_min).div_(s.a_max - s.a_min).mul_(s.b_max - s.b_min).add_(s.b_min)
        x.clamp_(s.b_min, s.b_max)
        return True
    if isinstance(step, NormalizeIntensityd):
        n = step.normalizer
        if n.nonzero or not n.channel_wise or n.subtrahend is not None or n.divisor is not None:
            return False
        if not _float32(n.dtype):
            return False
        for channel in x:
            # MONAI: mean and population std of the channel, std 0 -> 1, (img - mean) / std
            mean = torch.mean(channel.float()).item()
            std = torch.std(channel.float(), unbiased=False).item()
            channel.sub_(mean).div_(1.0 if std == 0.0 else std)
        return True
    return False


def _float32(dtype: Any) -> bool:
    return dtype is None or get_equivalent_dtype(dtype, torch.Tensor) == torch.float32


def _root(err: BaseException) -> str:
    while err.__cause__ is not None:
        err = err.__cause__
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
