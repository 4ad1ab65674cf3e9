#!/usr/bin/env python
"""Convert VISCERAL Anatomy3 volumes and per-organ masks to an nnU-Net v2 dataset.

python data_scripts/prepare_visceral.py --src VISCERAL/ --dst data/Dataset010_VISCERAL

Reads SRC/Volumes/<patient>_<vol>_<modality>.nii.gz and
SRC/Segmentations/<patient>_<vol>_<modality>_<RadLexID>_<annotator>.nii.gz and writes
DST/imagesTr/<patient>_<vol>_0000.nii.gz (the volume, unchanged),
DST/labelsTr/<patient>_<vol>.nii.gz (uint8 label map) and DST/dataset.json. See
segattn.data.visceral for the rules (class order, overlaps, annotators, missing organs).
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import NoReturn

from segattn.data.visceral import DEFAULT_MODALITY, VISCERAL_ORGANS, CaseResult, convert_visceral
from segattn.errors import SegattnError

PROG = "prepare_visceral.py"
DESCRIPTION = (
    "Convert VISCERAL Anatomy3 volumes and per-organ masks (SRC/Volumes, SRC/Segmentations) to "
    "an nnU-Net v2 dataset in DST. Classes 1..K are the organs in this order: "
    + ", ".join(VISCERAL_ORGANS)
    + " (--organs keeps a subset, renumbered in that order). Overlapping voxels go to the "
    "organ with fewer voxels. An organ without a mask stays background and is listed in "
    'dataset.json "missing_labels", which `segattn evaluate` scores as not annotated. '
    "Several annotators of one organ: the lowest annotator ID unless --annotator. A case whose "
    "masks do not match its volume's grid is reported and skipped (exit status 1); the other "
    "cases are converted. Re-runs skip converted cases unless --overwrite."
)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` and convert; print one line per case and a summary; returns the exit
    status (0: all converted, 1: some case or the whole conversion failed, 2: bad arguments)."""
    parser = _Parser(prog=PROG, description=DESCRIPTION)
    parser.add_argument("--src", required=True, help="VISCERAL folder (Volumes/, Segmentations/)")
    parser.add_argument("--dst", required=True, help="nnU-Net dataset folder to write")
    parser.add_argument(
        "--modality",
        default=DEFAULT_MODALITY,
        help=f"<modality>_<region> of the volumes to convert (default {DEFAULT_MODALITY})",
    )
    parser.add_argument(
        "--annotator",
        type=int,
        default=None,
        metavar="ID",
        help="use only this annotator's masks (an organ it did not annotate is missing); "
        "default: the lowest annotator ID per organ and volume",
    )
    parser.add_argument(
        "--organs",
        nargs="+",
        choices=list(VISCERAL_ORGANS),
        metavar="NAME",
        help="convert only these organs (classes renumbered in the standard order)",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="convert every case again and remove other cases from DST",
    )
    args = parser.parse_args(argv)
    start = time.perf_counter()
    try:
        report = convert_visceral(
            args.src,
            args.dst,
            modality=args.modality,
            annotator=args.annotator,
            organs=args.organs,
            overwrite=args.overwrite,
            on_case=_print_case,
        )
    except (SegattnError, ValueError, OSError) as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 1
    counts = {s: sum(c.status == s for c in report.cases) for s in ("converted", "skipped")}
    failed = len(report.failed)
    where = report.dataset_json.parent if report.dataset_json else f"{args.dst} (nothing written)"
    print(
        f"{counts['converted']} converted, {counts['skipped']} already converted, "
        f"{failed} failed; {report.overlap_voxels} overlapping voxels in the converted cases "
        f"-> {where} ({time.perf_counter() - start:.1f} s)"
    )
    return 1 if failed else 0


def _print_case(result: CaseResult) -> None:
    if result.status == "failed":
        print(f"{PROG}: error: {result.error}", file=sys.stderr)
        return
    parts = [f"{result.case}: {result.status}"]
    if result.status == "skipped":
        parts[0] += " (already converted)"
    if result.missing:
        parts.append(f"no mask for {', '.join(result.missing)}")
    if result.overlap_voxels:
        pairs = ", ".join(f"{kept} over {lost} {n}" for (kept, lost), n in result.overlaps.items())
        parts.append(f"{result.overlap_voxels} overlapping voxels ({pairs})")
    print("; ".join(parts))


if __name__ == "__main__":
    sys.exit(main())
