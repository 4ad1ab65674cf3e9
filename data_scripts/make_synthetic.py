#!/usr/bin/env python
"""Write a synthetic phantom dataset in the nnU-Net v2 layout, or in the real data's own layout.

python data_scripts/make_synthetic.py --kind malc --out data/malc --cases 14 --size 64
python data_scripts/make_synthetic.py --kind malc --layout native --out data/malc_raw --cases 14
python data_scripts/make_synthetic.py --kind mni152 --out data/mni152 --cases 10
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import NoReturn

from segattn.data.phantoms import LAYOUTS, available, make_dataset
from segattn.errors import SegattnError

PROG = "make_synthetic.py"
DESCRIPTION = (
    "Write a synthetic phantom dataset in the nnU-Net v2 layout (default) or, with --layout "
    "native, in the layout the real data is distributed in."
)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv``, write the dataset, print one summary line; returns the exit status."""
    parser = _Parser(prog=PROG, description=DESCRIPTION)
    parser.add_argument("--kind", required=True, choices=available(), help="phantom kind")
    parser.add_argument("--out", required=True, help="dataset folder to write")
    parser.add_argument("--cases", required=True, type=int, help="number of cases in total")
    parser.add_argument("--size", type=int, default=None, help="voxels per axis (kind's default)")
    parser.add_argument("--seed", type=int, default=0, help="dataset seed (default 0)")
    parser.add_argument(
        "--test-cases",
        type=int,
        default=0,
        help="make the last N cases test cases (imagesTs/labelsTs)",
    )
    parser.add_argument(
        "--layout",
        choices=LAYOUTS,
        default="nnunet",
        help="nnunet: imagesTr/labelsTr + dataset.json (default); native: the real data's layout "
        "(MALC: training-images/, training-labels/*_glm.nii.gz with Neuromorphometrics IDs)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing dataset")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    try:
        info = make_dataset(
            args.kind,
            args.out,
            args.cases,
            size=args.size,
            seed=args.seed,
            test_cases=args.test_cases,
            overwrite=args.overwrite,
            layout=args.layout,
        )
    except (SegattnError, ValueError, OSError) as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 1
    layout = "" if args.layout == "nnunet" else f", {args.layout} layout"
    print(
        f"{args.kind}: {len(info.training)} training + {len(info.test)} test cases, "
        f"{info.num_classes - 1} structures{layout} -> {info.root} "
        f"({time.perf_counter() - start:.1f} s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
