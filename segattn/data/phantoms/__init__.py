"""Synthetic phantoms written as nnU-Net v2 datasets, for demos and tests without real scans.

Each kind is one module (``malc``: T1 brain MRI like MICCAI 2012 MALC; ``visceral``: CT like
VISCERAL Anatomy3; ``mni152``: T1 subjects deformed from the MNI152 template, grey and white
matter) with a ``make_<kind>_case(seed, size, ...) -> PhantomCase`` and a
``make_<kind>_dataset(out_dir, cases, size, seed, test_cases, overwrite, layout) -> DatasetInfo``;
:func:`make_dataset` picks one by name. ``layout="nnunet"`` writes the nnU-Net v2 layout,
``"native"`` the real data's distributed layout (for trying the converters of :mod:`segattn.data`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from segattn.data.layout import DatasetInfo
from segattn.data.phantoms._common import LAYOUTS, ORIENTATIONS, PhantomCase
from segattn.data.phantoms.malc import FOV_MM, MALC_LABELS, make_malc_case, make_malc_dataset
from segattn.data.phantoms.mni152 import MNI152_LABELS, make_mni152_case, make_mni152_dataset
from segattn.data.phantoms.visceral import (
    VISCERAL_LABELS,
    make_visceral_case,
    make_visceral_dataset,
)

__all__ = [
    "FOV_MM",
    "LAYOUTS",
    "MALC_LABELS",
    "MNI152_LABELS",
    "ORIENTATIONS",
    "PhantomCase",
    "VISCERAL_LABELS",
    "available",
    "make_dataset",
    "make_malc_case",
    "make_malc_dataset",
    "make_mni152_case",
    "make_mni152_dataset",
    "make_visceral_case",
    "make_visceral_dataset",
]

# kind -> (dataset writer, default size). A new kind (e.g. "visceral") adds one entry.
_KINDS: dict[str, tuple[Callable[..., DatasetInfo], int]] = {
    "malc": (make_malc_dataset, 128),
    "mni152": (make_mni152_dataset, 100),
    "visceral": (make_visceral_dataset, 128),
}


def available() -> list[str]:
    """Names of the phantom kinds :func:`make_dataset` accepts."""
    return sorted(_KINDS)


def make_dataset(
    kind: str,
    out_dir: str | Path,
    cases: int,
    *,
    size: int | None = None,
    seed: int = 0,
    test_cases: int = 0,
    overwrite: bool = False,
    layout: str = "nnunet",
) -> DatasetInfo:
    """Write a phantom dataset of the given kind; ``size=None`` takes the kind's default.

    Raises:
        ValueError: unknown ``kind`` (the message lists the valid ones), unknown ``layout`` or
            bad counts.
    """
    if kind not in _KINDS:
        raise ValueError(f"unknown phantom kind {kind!r}; choose from {', '.join(available())}")
    writer, default_size = _KINDS[kind]
    return writer(
        out_dir,
        cases,
        size=default_size if size is None else size,
        seed=seed,
        test_cases=test_cases,
        overwrite=overwrite,
        layout=layout,
    )
