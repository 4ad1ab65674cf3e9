#!/usr/bin/env python
"""Peak memory of reading a DICOM series with segattn, measured in a fresh subprocess.

python data_scripts/measure_dicom_memory.py --series /tmp/big_series

The child process imports everything first, records its peak resident memory (Linux VmHWM),
reads the series with :func:`segattn.imageio.read_scan` and touches every voxel, then records the
peak again. The difference is what reading added; it is compared with the size of one volume.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

_CHILD = """
import json, sys
import numpy as np
import SimpleITK, pydicom, nibabel
from segattn.imageio import read_scan

def peak():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
before = peak()
scan = read_scan(sys.argv[1])
data = np.asanyarray(scan.image.dataobj)
checksum = int(data[::7, ::7, ::7].astype(np.int64).sum())
after = peak()
print(json.dumps({"shape": list(data.shape), "dtype": str(data.dtype),
                  "volume": int(data.nbytes), "before": before, "after": after}))
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="measure_dicom_memory.py", description=__doc__)
    parser.add_argument("--series", required=True, help="a DICOM series folder")
    args = parser.parse_args(argv)
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, args.series], capture_output=True, text=True, check=False
    )
    if out.returncode != 0:
        print(out.stderr.strip().splitlines()[-1], file=sys.stderr)
        return 1
    r = json.loads(out.stdout)
    mb = 1024 * 1024
    added = r["after"] - r["before"]
    print(
        f"series {'x'.join(map(str, r['shape']))} {r['dtype']}: one volume {r['volume'] / mb:.0f} "
        f"MiB; peak RSS {r['before'] / mb:.0f} MiB after imports, {r['after'] / mb:.0f} MiB "
        f"after reading: +{added / mb:.0f} MiB = {added / r['volume']:.2f} volumes"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
