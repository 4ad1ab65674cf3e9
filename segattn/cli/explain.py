"""``segattn explain``: a checkpoint's attention gates for scans, on the scans' own grids."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from segattn.errors import SegattnError
from segattn.inference import Predictor
from segattn.inference.inputs import collect_cases


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "explain",
        help="write the attention gates of a checkpoint for scans (NIfTI, CSV, PNG montage)",
        description=(
            "For every scan, write DIR/<case>/gate_<block>.nii.gz (each spatial gate resampled "
            "to the scan's grid, float32, the scan's header; per-channel maps averaged over "
            "channels), prediction.nii.gz, channel_gates.csv (block,name,channel,gate; 2D "
            "models: mean over slices) and montage.png. Inputs as for `segattn predict`. Exit "
            "status: 0 all cases written, 1 some case failed, 2 usage or model error."
        ),
    )
    parser.add_argument("--model", required=True, metavar="CKPT", help="one checkpoint")
    parser.add_argument(
        "--input",
        nargs="+",
        required=True,
        metavar="PATH",
        help="image files or folders of .nii/.nii.gz files (as for `segattn predict`)",
    )
    parser.add_argument("--output", required=True, metavar="DIR", help="output folder")
    parser.add_argument(
        "--blocks",
        nargs="+",
        metavar="BLOCK",
        help="blocks to write (keys of the network's attention_modules(), e.g. the names in "
        "channel_gates.csv); default: all",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace existing outputs (default: refuse)"
    )
    parser.add_argument(
        "--no-montage", action="store_true", help="skip the PNG montage (NIfTI and CSV only)"
    )
    parser.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        default="auto",
        help="auto: CUDA when available (default)",
    )
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from segattn.inspect import explain_scan, write_explanation

    predictor = Predictor(args.model, device=args.device, progress=False)
    if args.blocks:
        valid = list(predictor.models[0].net.attention_modules())  # type: ignore[operator]
        unknown = [b for b in args.blocks if b not in valid]
        if unknown:
            raise SegattnError(f"unknown block(s) {unknown}; {args.model} has {valid}")
    out_dir = Path(args.output)
    if out_dir.exists() and not out_dir.is_dir():
        raise SegattnError(f"{out_dir}: output exists and is not a folder")
    cases, problems = collect_cases(args.input, predictor.in_channels)
    errors = [p.error for p in problems]
    written = 0
    for case in cases:
        target = out_dir / case.name
        if target.exists() and not args.overwrite:
            errors.append(f"{target}: output already exists (use --overwrite to replace it)")
            continue
        try:
            explanation = explain_scan(predictor, case.images, blocks=args.blocks)
            write_explanation(explanation, target, montage=not args.no_montage)
        except SegattnError as err:
            errors.append(str(err))
            continue
        written += 1
        print(f"{case.name}: {target}")
    for error in errors:
        print(f"segattn: error: {error}", file=sys.stderr)
    summary = f"explained {written} case(s) into {out_dir}"
    print(summary + (f"; {len(errors)} failed" if errors else ""))
    return 1 if errors else 0
