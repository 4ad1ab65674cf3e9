"""Write MALC-like phantoms in the MICCAI 2012 challenge's own layout (before any conversion).

::

    OUT/training-images/malc_000.nii.gz   training-labels/malc_000_glm.nii.gz
    OUT/testing-images/malc_011.nii.gz    testing-labels/malc_011_glm.nii.gz
    OUT/synthetic.json                    what made the folder (not part of the challenge layout)

Labels hold Neuromorphometrics IDs, so :func:`segattn.data.malc.prepare_malc` can be tried on it;
with the ``quicknat`` protocol it gives exactly the nnU-Net layout phantom of the same arguments.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from pathlib import Path

from segattn.data.layout import Case, DatasetInfo
from segattn.data.malc_labels import QUICKNAT_LABELS
from segattn.data.phantoms._common import (
    PhantomCase,
    case_seeds,
    describe_record,
    phantom_folder,
    read_record,
    remove_stale,
    to_nifti,
)
from segattn.errors import SegattnError
from segattn.fileio import write_text_atomic
from segattn.imageio import strip_ending, write_image

logger = logging.getLogger(__name__)

RECORD = "synthetic.json"
_FOLDERS = {"Tr": "training", "Ts": "testing"}


def native_files(root: Path, subset: str, name: str) -> tuple[Path, Path]:
    """Image and label paths of one case in the challenge layout (``subset`` ``Tr`` or ``Ts``)."""
    folder = _FOLDERS[subset]
    return (
        root / f"{folder}-images" / f"{name}.nii.gz",
        root / f"{folder}-labels" / f"{name}_glm.nii.gz",
    )


def write_native_dataset(
    out_dir: str | Path,
    *,
    make_case: Callable[[int], PhantomCase],
    cases: int,
    test_cases: int,
    seed: int,
    params: Mapping[str, object],
    overwrite: bool,
) -> DatasetInfo:
    """Write ``cases`` cases ``malc_000``, ... in the challenge layout, or reuse a complete one.

    Seeds, names and the training/testing split are those of the nnU-Net layout writer
    (:func:`segattn.data.phantoms._common.write_phantom_dataset`). ``synthetic.json`` records the
    arguments and is written last; a folder recording the same ones with all files present is
    returned as is. The returned :class:`DatasetInfo` (``layout="malc2012"``) lists the native
    files; its ``labels`` are the QuickNAT classes the IDs convert to.

    Raises:
        ValueError: bad ``cases``/``test_cases``.
        SegattnError: the folder holds other data and ``overwrite`` is False.
    """
    out = phantom_folder(out_dir, cases, test_cases)
    record = {
        "kind": "malc",
        "layout": "native",
        "cases": cases,
        "test_cases": test_cases,
        "seed": seed,
        **params,
    }
    names = [f"malc_{i:03d}" for i in range(cases)]
    subsets = ["Tr"] * (cases - test_cases) + ["Ts"] * test_cases
    files = {name: native_files(out, s, name) for name, s in zip(names, subsets, strict=True)}
    info = DatasetInfo(
        root=out,
        channel_names={"0": "T1"},
        labels=dict(QUICKNAT_LABELS),
        training=[Case(n, [files[n][0]], files[n][1]) for n in names[: cases - test_cases]],
        test=[Case(n, [files[n][0]], files[n][1]) for n in names[cases - test_cases :]],
        name="synthetic_malc",
        layout="malc2012",
    )
    record_path = out / RECORD
    if not overwrite:
        existing = read_record(record_path)
        if existing is not None and existing != record:
            raise SegattnError(
                f"{out} holds {describe_record(existing)}; pass overwrite=True (--overwrite) to "
                "replace it"
            )
        if existing is None and out.is_dir() and any(_visible(out)):
            raise SegattnError(
                f"{out} is not empty and holds no synthetic MALC dataset; pass overwrite=True "
                "(--overwrite) to write into it"
            )
        if existing is not None and all(p.is_file() for pair in files.values() for p in pair):
            logger.info("%s already holds this native malc dataset; skipping", out)
            return info
    record_path.unlink(missing_ok=True)
    _remove_stale(out, {p for pair in files.values() for p in pair})
    for name, case_seed in zip(names, case_seeds(seed, cases), strict=True):
        image, label, affine = make_case(case_seed)
        image_path, label_path = files[name]
        for path in (image_path, label_path):
            path.parent.mkdir(parents=True, exist_ok=True)
        write_image(to_nifti(image, affine), image_path)
        write_image(to_nifti(label, affine), label_path)
    write_text_atomic(record_path, json.dumps(record, indent=2) + "\n")
    return info


def _visible(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if not p.name.startswith(".")]


def _remove_stale(out: Path, keep: set[Path]) -> None:
    """Delete ``malc_*`` NIfTI files not in ``keep`` and leftover temporaries."""
    remove_stale(
        [out / f"{folder}-{kind}" for folder in _FOLDERS.values() for kind in ("images", "labels")],
        lambda path: strip_ending(path).startswith("malc_") and path not in keep,
    )
