#!/usr/bin/env python
"""Convert MICCAI 2012 Multi-Atlas Labeling Challenge data into an nnU-Net v2 raw dataset.

python data_scripts/prepare_malc.py --src MALC2012 --dst data/Dataset001_MALC
python data_scripts/prepare_malc.py --src MALC2012 --dst data/Dataset002_MALCall --protocol all

The work is done by segattn.data.malc.prepare_malc; see its documentation.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import NoReturn

from segattn.data.malc import PROTOCOLS, prepare_malc
from segattn.errors import SegattnError

PROG = "prepare_malc.py"
DESCRIPTION = (
    "Convert the MICCAI 2012 multi-atlas data (training-images/, training-labels/*_glm.nii(.gz), "
    "testing-images/, testing-labels/) into an nnU-Net v2 raw dataset (imagesTr/, labelsTr/, "
    "imagesTs/, labelsTs/, dataset.json). Finished cases are skipped on a re-run."
)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv``, convert, print a short report; returns the exit status (1 if any case
    failed)."""
    parser = _Parser(prog=PROG, description=DESCRIPTION)
    parser.add_argument("--src", required=True, help="MICCAI 2012 folder (read only)")
    parser.add_argument("--dst", required=True, help="dataset folder to write")
    parser.add_argument(
        "--protocol",
        choices=PROTOCOLS,
        default="quicknat",
        help="quicknat: QuickNAT's 33 classes (default); all: every label ID, renumbered",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="convert finished cases again / replace dst"
    )
    args = parser.parse_args(argv)
    start = time.perf_counter()
    try:
        report = prepare_malc(args.src, args.dst, protocol=args.protocol, overwrite=args.overwrite)
    except (SegattnError, OSError) as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 1
    for line in report.failed:
        print(f"{PROG}: error: {line}", file=sys.stderr)
    print(
        f"{args.protocol}: {len(report.converted)} converted, {len(report.skipped)} skipped "
        f"(already done), {len(report.failed)} failed -> {args.dst} "
        f"({time.perf_counter() - start:.1f} s)"
    )
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
