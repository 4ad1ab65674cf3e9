"""Steps the converters of distributed data sets (:mod:`segattn.data.malc`,
:mod:`segattn.data.visceral`) share: copying a scan unchanged. Reading, grid checks and label
writing are :mod:`segattn.imageio`'s."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

from segattn.fileio import atomic_path, copy_atomic
from segattn.imageio import image_ending


def copy_as_nii_gz(src: Path, dst: Path) -> None:
    """Write ``src``'s bytes as ``dst`` (``.nii.gz``) atomically: a ``.nii.gz`` is copied byte for
    byte, a ``.nii`` is gzip-compressed (fast level 1, no name or time stamp in the gzip header,
    so the same input gives the same bytes)."""
    if image_ending(src) == ".nii.gz":
        copy_atomic(src, dst)
        return
    with (
        atomic_path(dst) as tmp,
        src.open("rb") as raw,
        tmp.open("wb") as out,
        gzip.GzipFile(filename="", mode="wb", fileobj=out, compresslevel=1, mtime=0) as packed,
    ):
        shutil.copyfileobj(raw, packed, length=1 << 20)
