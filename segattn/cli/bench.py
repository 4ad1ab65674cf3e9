"""``segattn bench``: measurements that back design claims.

``segattn bench predict-memory`` predicts one synthetic CT (int16 NIfTI, stored LPS so the RAS
reorientation really flips axes) with a randomly initialised 3D U-Net checkpoint, once with the
slab-wise bounded-memory method and once with MONAI's whole-volume accumulation, each in its own
Python process so their peak resident memory (``VmHWM``; ``ru_maxrss``) is measured separately,
and prints both with wall times and the ratios. The network is small so that the run takes minutes
on a CPU; what is measured is the accumulation, not the network.

``segattn bench train`` (in :mod:`segattn.cli.bench_train`) measures training steps of networks
with and without attention modules.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from segattn.cli.bench_train import add_train_parser

METHODS = ("slabs", "whole")
MB = 1024**2
GB = 1024**3


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "bench",
        help="benchmarks (peak memory and time of prediction methods)",
        description="Benchmarks backing design claims.",
    )
    sub = parser.add_subparsers(dest="bench", metavar="BENCHMARK")
    sub.required = True
    mem = sub.add_parser(
        "predict-memory",
        help="peak memory and time of slab-wise vs whole-volume 3D prediction",
        description=(
            "Write a synthetic int16 CT and a random 3D U-Net checkpoint to a temporary folder, "
            "predict it with the slab-wise method and with MONAI's whole-volume sliding window, "
            "each in its own process, and print peak resident memory and wall time of each. "
            "The defaults (512x512x400, 20 classes) need ~10 GB for the whole-volume method."
        ),
    )
    mem.add_argument(
        "--shape",
        type=int,
        nargs=3,
        default=[512, 512, 400],
        metavar=("X", "Y", "Z"),
        help="CT size in voxels (default 512 512 400)",
    )
    mem.add_argument(
        "--classes", type=int, default=20, metavar="K", help="output classes (default 20)"
    )
    mem.add_argument(
        "--features",
        type=int,
        nargs="+",
        default=[4, 8, 16],
        metavar="F",
        help="U-Net widths (default 4 8 16)",
    )
    mem.add_argument(
        "--patch",
        type=int,
        nargs=3,
        default=[96, 96, 96],
        metavar=("PX", "PY", "PZ"),
        help="sliding window (default 96 96 96)",
    )
    mem.add_argument(
        "--overlap", type=float, default=0.25, metavar="F", help="window overlap (default 0.25)"
    )
    mem.add_argument(
        "--sw-batch-size", type=int, default=2, metavar="N", help="windows per pass (default 2)"
    )
    mem.add_argument(
        "--max-memory",
        type=float,
        default=1.0,
        metavar="GB",
        help="the slab method's buffer budget (default 1)",
    )
    mem.add_argument(
        "--methods", nargs="+", choices=METHODS, default=list(METHODS), help="methods to run"
    )
    mem.add_argument(
        "--threads",
        type=int,
        metavar="N",
        help="torch CPU threads in each worker (default: torch's)",
    )
    mem.add_argument(
        "--workdir", type=Path, metavar="DIR", help="keep the files here (default: a temp folder)"
    )
    mem.set_defaults(func=run)
    add_train_parser(sub)  # segattn bench train (segattn/cli/bench_train.py)
    return parser


def run(args: argparse.Namespace) -> int:
    from segattn.errors import SegattnError

    if min(args.shape) < 1 or args.classes < 2 or min(args.patch) < 1 or min(args.features) < 1:
        raise SegattnError("--shape, --patch and --features must be positive, --classes >= 2")
    if not 0.0 <= args.overlap < 1.0 or args.sw_batch_size < 1 or args.max_memory <= 0:
        raise SegattnError("--overlap must be in [0, 1), --sw-batch-size and --max-memory > 0")
    with tempfile.TemporaryDirectory(prefix="segattn-bench-") as tmp:
        work = Path(args.workdir) if args.workdir else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        image = work / "ct_0000.nii"
        ckpt = work / "unet3d.ckpt"
        write_synthetic_ct(image, tuple(args.shape))
        write_random_checkpoint(ckpt, args.classes, tuple(args.features), tuple(args.patch))
        shape = "x".join(map(str, args.shape))
        print(
            f"predict-memory: synthetic int16 CT {shape} (LPS storage), {args.classes} classes, "
            f"3D UNet features {tuple(args.features)}, patch {'x'.join(map(str, args.patch))}, "
            f"overlap {args.overlap}, sw-batch {args.sw_batch_size}, CPU "
            f"({os.cpu_count()} cores, {args.threads or 'default'} threads); "
            f"slabs budget {args.max_memory:g} GB"
        )
        print("each method runs in its own process; times are noisy on a shared machine")
        results: dict[str, dict[str, Any]] = {}
        for method in args.methods:
            job = {
                "method": method,
                "checkpoint": str(ckpt),
                "image": str(image),
                "output": str(work / f"pred_{method}"),
                "overlap": args.overlap,
                "sw_batch_size": args.sw_batch_size,
                "max_memory": args.max_memory,
                "threads": args.threads,
            }
            results[method] = _run_worker(job)
        print(
            f"{'method':<8} {'peak RSS (VmHWM)':>17} {'ru_maxrss':>10} {'after imports':>14} "
            f"{'predict time':>13}"
        )
        for method, r in results.items():
            print(
                f"{method:<8} {r['vmhwm'] / GB:>14.2f} GB {r['maxrss'] / GB:>7.2f} GB "
                f"{r['baseline'] / GB:>11.2f} GB {r['seconds']:>11.1f} s"
            )
        if set(results) == set(METHODS):
            s, w = results["slabs"], results["whole"]
            print(
                f"ratio: peak memory whole/slabs = {w['vmhwm'] / s['vmhwm']:.2f}x; "
                f"time slabs/whole = {s['seconds'] / w['seconds']:.2f}x"
            )
            print(f"labels identical: {_agreement(s['file'], w['file']):.4%} of voxels")
    return 0


def write_synthetic_ct(path: Path, shape: tuple[int, int, int], seed: int = 0) -> None:
    """An int16 CT-like volume (air, a body ellipse, two organs, noise), LPS voxel order."""
    import nibabel as nib
    import numpy as np

    rng = np.random.default_rng(seed)
    x, y, z = shape
    gx = np.linspace(-1, 1, x, dtype=np.float32)[:, None]
    gy = np.linspace(-1, 1, y, dtype=np.float32)[None, :]
    body = gx**2 / 0.8 + gy**2 / 0.5 < 0.7
    data = np.empty(shape, dtype=np.int16)
    for k in range(z):  # slice by slice: no float volume in memory
        t = k / max(1, z - 1)
        organ = (gx - 0.3) ** 2 + (gy + 0.1) ** 2 < 0.05 + 0.05 * t
        other = (gx + 0.35) ** 2 + (gy - 0.05) ** 2 < 0.03 * (1 - t)
        hu = np.where(body, 40.0, -1000.0) + 60.0 * organ + 120.0 * other
        data[:, :, k] = (hu + rng.normal(0, 15, size=(x, y))).astype(np.int16)
    affine = np.diag([-0.8, -0.8, 1.5, 1.0])
    img = nib.Nifti1Image(data, affine)
    img.header.set_qform(affine, code=1)
    img.header.set_sform(affine, code=1)
    nib.save(img, path)


def write_random_checkpoint(
    path: Path, classes: int, features: tuple[int, ...], patch: tuple[int, int, int]
) -> None:
    """A segattn checkpoint of a randomly initialised 3D U-Net (CT window, RAS, no resampling)."""
    import torch

    from segattn.inference.checkpoint import CheckpointMeta
    from segattn.nets import UNet

    torch.manual_seed(0)
    net = UNet(spatial_dims=3, in_channels=1, num_classes=classes, features=features)
    meta = CheckpointMeta.for_net(
        "unet",
        net.config,
        {
            "labels": {"background": 0, **{f"organ_{i}": i for i in range(1, classes)}},
            "channel_names": {"0": "CT"},
            "preprocessing": {
                "orientation": "RAS",
                "spacing": None,
                "intensity": {"kind": "ct", "window": [-160.0, 240.0]},
            },
            "mode": "3d",
            "patch_size": list(patch),
        },
    ).to_dict()
    state = {"net." + k: v for k, v in net.state_dict().items()}
    torch.save({"state_dict": state, "segattn": meta}, path)


def _run_worker(job: dict[str, Any]) -> dict[str, Any]:
    from segattn.errors import SegattnError

    cmd = [sys.executable, "-m", "segattn.cli.bench", "worker", json.dumps(job)]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise SegattnError(
            f"bench worker for method {job['method']!r} failed (exit {proc.returncode}): {tail}"
        )
    out: dict[str, Any] = json.loads(lines[-1])
    out["process_seconds"] = wall
    return out


def _agreement(a: str, b: str) -> float:
    import nibabel as nib
    import numpy as np

    la = np.asanyarray(nib.load(a).dataobj)  # type: ignore[attr-defined]
    lb = np.asanyarray(nib.load(b).dataobj)  # type: ignore[attr-defined]
    return float((la == lb).mean())


def _memory() -> dict[str, int]:
    """VmRSS and VmHWM of this process in bytes (ru_maxrss where /proc is missing)."""
    out = {}
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    key, value = line.split(":", 1)
                    out[key] = int(value.split()[0]) * 1024
    except OSError:
        pass
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    maxrss *= 1 if sys.platform == "darwin" else 1024
    return {
        "rss": out.get("VmRSS", maxrss),
        "vmhwm": out.get("VmHWM", maxrss),
        "maxrss": maxrss,
    }


def _worker(argv: list[str]) -> int:
    """Predict one image with one method and print a JSON line of memory and time."""
    job = json.loads(argv[1])
    import torch

    from segattn.inference import Predictor

    if job.get("threads"):
        torch.set_num_threads(int(job["threads"]))

    baseline = _memory()["rss"]
    predictor = Predictor(
        job["checkpoint"],
        device="cpu",
        sw_batch_size=job["sw_batch_size"],
        overlap=job["overlap"],
        progress=False,
        max_memory=job["max_memory"],
        method=job["method"],
    )
    start = time.perf_counter()
    [result] = predictor.predict_files([job["image"]], job["output"], overwrite=True)
    seconds = time.perf_counter() - start
    if not result.ok:
        print(result.error, file=sys.stderr)
        return 1
    mem = _memory()
    print(
        json.dumps(
            {
                "vmhwm": mem["vmhwm"],
                "maxrss": mem["maxrss"],
                "baseline": baseline,
                "seconds": seconds,
                "file": str(result.output),
            }
        )
    )
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] != ["worker"]:
        sys.exit("usage: python -m segattn.cli.bench worker JOB_JSON (internal)")
    sys.exit(_worker(sys.argv[1:]))
