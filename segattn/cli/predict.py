"""``segattn predict``: label maps for scans (NIfTI, NRRD, MetaImage, DICOM series), written with
the scans' own geometry, plus label-name files for ITK-SNAP and 3D Slicer."""

from __future__ import annotations

import argparse
import math
import sys

from segattn.errors import SegattnError
from segattn.imageio import OUTPUT_FORMATS
from segattn.inference import Predictor
from segattn.inference.ensemble import PRESETS


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "predict",
        help="segment scans (NIfTI, NRRD, MetaImage, DICOM series) with a trained checkpoint",
        description=(
            "Segment .nii/.nii.gz/.nrrd/.nhdr/.mha/.mhd scans and DICOM series folders and write "
            "DIR/<input name> as integer label maps on the input grid (nnU-Net's _0000 channel "
            "suffix is dropped: CASE_0000.nii.gz -> CASE.nii.gz; a series folder CT1 -> "
            "CT1.nii.gz), plus labels.itksnap.txt and labels.ctbl naming the labels for ITK-SNAP "
            "and 3D Slicer. Exit status: 0 all cases written, 1 some case failed (one line each "
            "on stderr, nothing written for it), 2 usage or model error."
        ),
    )
    parser.add_argument(
        "--model",
        nargs="+",
        required=True,
        metavar="CKPT",
        help="checkpoint(s); several are ensembled by a weighted average of their class "
        "probabilities (2D models of different views and 3D models may be mixed); they must "
        "share labels and input channels",
    )
    parser.add_argument(
        "--weights",
        nargs="+",
        metavar="W",
        help="ensemble weights: one positive number per --model (normalised to sum 1), or the "
        f"preset {' | '.join(sorted(PRESETS))} (0.4 axial, 0.4 coronal, 0.2 sagittal by each "
        "2D checkpoint's view; needs 2D checkpoints of distinct views). Default: equal",
    )
    parser.add_argument(
        "--input",
        nargs="+",
        required=True,
        metavar="PATH",
        help="image files, DICOM series folders, or folders of those (multi-channel models: 4D "
        "files or nnU-Net channel scans CASE_0000, CASE_0001, ... in one folder)",
    )
    parser.add_argument(
        "--series",
        metavar="UID",
        help="SeriesInstanceUID to read from DICOM folders that hold several series",
    )
    parser.add_argument(
        "--output-format",
        choices=OUTPUT_FORMATS,
        default="same",
        help="label map format: same (default: the input's format; NIfTI .nii.gz for DICOM "
        "series; .nhdr -> .nrrd, .mhd -> .mha), nifti, nrrd, mha, or dicom-seg (a DICOM "
        "Segmentation object referencing the source series; DICOM inputs only)",
    )
    parser.add_argument("--output", required=True, metavar="DIR", help="output folder")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace existing outputs (default: refuse)"
    )
    parser.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        default="auto",
        help="auto: CUDA when available (default)",
    )
    parser.add_argument(
        "--sw-batch-size",
        type=_positive_int,
        default=4,
        metavar="N",
        help="sliding windows (3D) or slices (2D) per forward pass (default 4)",
    )
    parser.add_argument(
        "--overlap",
        type=_fraction,
        default=0.5,
        metavar="F",
        help="sliding-window overlap in [0, 1) (default 0.5)",
    )
    parser.add_argument(
        "--max-memory",
        type=_positive_float,
        default=1.0,
        metavar="GB",
        help="budget for the working buffers of the slab-wise prediction (default 1); the image, "
        "the label map and the network come on top. Sliding-window buffers are split into more "
        "column blocks (some windows run twice) to fit; mixed-view ensembles need K x volume "
        "accumulators (float32, or 16-bit fixed point past the budget)",
    )
    parser.add_argument(
        "--whole-volume",
        action="store_true",
        help="MONAI's whole-volume sliding window and inverse transforms instead of slabs "
        "(same labels; needs 4 x classes x voxels bytes and more: > 8 GB for a 512x512x400 CT "
        "with 20 classes)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    predictor = Predictor(
        args.model,
        device=args.device,
        sw_batch_size=args.sw_batch_size,
        overlap=args.overlap,
        progress=not args.no_progress,
        weights=_weights(args.weights),
        max_memory=args.max_memory,
        method="whole" if args.whole_volume else "slabs",
    )
    results = predictor.predict_files(
        args.input,
        args.output,
        overwrite=args.overwrite,
        series=args.series,
        output_format=args.output_format,
    )
    failed = [r for r in results if not r.ok]
    for r in failed:
        print(f"segattn: error: {r.error}", file=sys.stderr)
    written = len(results) - len(failed)
    summary = f"predicted {written} case(s) into {args.output}"
    print(summary + (f"; {len(failed)} failed" if failed else ""))
    return 1 if failed else 0


def _weights(tokens: list[str] | None) -> str | list[float] | None:
    if tokens is None:
        return None
    if len(tokens) == 1 and tokens[0].lower() in PRESETS:
        return tokens[0]
    try:
        return [float(t) for t in tokens]
    except ValueError:
        raise SegattnError(
            f"--weights takes one number per model or a preset ({', '.join(sorted(PRESETS))}), "
            f"got {' '.join(tokens)!r}"
        ) from None


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}")
    return value
