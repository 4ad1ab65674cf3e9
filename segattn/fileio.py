"""Atomic file writes: readers see the old file or the whole new one, never half of it.

Every writer in segattn (NIfTI outputs, dataset.json, CSV tables, figures, checkpoint copies)
goes through :func:`atomic_path`: it writes to a hidden temporary file beside the target and
renames it onto the target only when the write succeeded.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

import nibabel as nib


@contextlib.contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a hidden temporary path beside ``target``; move it onto ``target`` on success.

    The temporary name keeps the target's name as its end (``.tmp-<pid>-<random>-CASE.nii.gz``)
    so writers that look at the suffix (nibabel's gzip choice, matplotlib's format) behave the
    same. On an exception the temporary file is removed and ``target`` is left untouched.
    """
    target = Path(target)
    tmp = target.with_name(f".tmp-{os.getpid()}-{secrets.token_hex(4)}-{target.name}")
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def save_nifti_atomic(image: nib.Nifti1Image, path: str | Path) -> None:
    """``nib.save`` to ``path`` atomically (the ending picks ``.nii`` or ``.nii.gz``)."""
    with atomic_path(path) as tmp:
        nib.save(image, tmp)


def copy_atomic(src: str | Path, dst: str | Path) -> None:
    """Copy the file ``src`` to ``dst`` atomically."""
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)
