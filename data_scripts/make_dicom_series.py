#!/usr/bin/env python
"""Write a scan (NIfTI, NRRD, MetaImage) as a DICOM CT series folder, to try the DICOM path.

python data_scripts/make_dicom_series.py --image scan.nii.gz --out dicom/scan
python data_scripts/make_dicom_series.py --size 512 512 400 --out /tmp/big_series
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import NoReturn

import numpy as np

from segattn.errors import SegattnError
from segattn.imageio import read_scan, to_sitk, write_dicom_series

PROG = "make_dicom_series.py"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv``, write the series, print one summary line; returns the exit status."""
    parser = _Parser(
        prog=PROG,
        description="Write a 3D scan, or a synthetic int16 volume, as a DICOM CT series "
        "(one file per slice, the scan's geometry, voxels rounded to int16).",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--image", help="a .nii/.nii.gz/.nrrd/.nhdr/.mha/.mhd scan")
    source.add_argument(
        "--size", type=int, nargs=3, metavar=("X", "Y", "Z"), help="synthetic volume size"
    )
    parser.add_argument("--out", required=True, help="series folder to write (must be empty)")
    parser.add_argument("--description", default="segattn series", help="SeriesDescription")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    try:
        if args.image is not None:
            scan = read_scan(args.image)
            if len(scan.shape) != 3:
                raise SegattnError(f"{args.image}: a DICOM series needs a 3D scan")
            data = np.rint(np.asanyarray(scan.image.dataobj)).astype(np.int16)
            affine = scan.affine
        else:
            x, y, z = args.size
            ramp = np.arange(x * y, dtype=np.int16).reshape(x, y) % 2000 - 1000
            data = np.broadcast_to(ramp[:, :, None], (x, y, z))
            affine = np.diag([0.8, 0.8, 1.25, 1.0])
        files = write_dicom_series(to_sitk(data, affine), args.out, description=args.description)
    except (SegattnError, OSError) as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 1
    shape = "x".join(str(s) for s in data.shape)
    print(f"{shape} -> {len(files)} slices in {args.out} ({time.perf_counter() - start:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
