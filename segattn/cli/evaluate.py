"""``segattn evaluate``: Dice (and HD95, NSD) per structure and case between predictions and
label maps."""

from __future__ import annotations

import argparse
from pathlib import Path

from segattn.errors import SegattnError
from segattn.evaluation import evaluate_folders, read_label_names, read_missing_labels
from segattn.metrics import METRICS, check_metrics


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "evaluate",
        help="Dice (and HD95, NSD) per structure between predicted and reference label maps",
        description=(
            "Match files of --pred and --labels by case name (file name without its ending), "
            "print one row per structure (Dice mean ± population std over the cases where it is "
            "defined, and that number of cases) and a final line 'mean Dice: 0.xxx' (mean of "
            "the structure means). A structure absent from both prediction and label of a case "
            "scores nan there and is left out of the means; so does a structure that "
            'dataset.json lists as not annotated in that case ("missing_labels"). HD95 and NSD '
            "are in millimetres from the label maps' voxel spacing; a structure absent from one "
            "side only scores Dice 0, NSD 0 and HD95 = the image diagonal in mm."
        ),
    )
    parser.add_argument("--pred", required=True, metavar="DIR", help="predicted label maps")
    parser.add_argument("--labels", required=True, metavar="DIR", help="reference label maps")
    parser.add_argument(
        "--dataset-json",
        metavar="FILE",
        help="dataset.json naming the labels and any not-annotated structures per case "
        "(default: dataset.json in the parent of --labels if present, else the label values "
        "are the names)",
    )
    parser.add_argument(
        "--csv",
        metavar="FILE",
        help="also write one row per case and structure, columns case,label and one per "
        "metric (label = structure name; 'nan' when absent from prediction and label), plus "
        "'annotated' (yes/no) when dataset.json lists not-annotated structures",
    )
    parser.add_argument(
        "--metrics",
        default="dice",
        metavar="LIST",
        help=f"comma-separated metrics among {','.join(METRICS)} (default: %(default)s); the "
        "table always shows Dice",
    )
    parser.add_argument(
        "--nsd-tolerance",
        type=float,
        default=1.0,
        metavar="MM",
        help="distance in mm within which a surface voxel counts for NSD (default: %(default)s)",
    )
    parser.add_argument(
        "--allow-missing",
        action="store_true",
        help="skip label cases without a prediction instead of failing",
    )
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    try:
        metrics = check_metrics([m for m in args.metrics.split(",") if m.strip()])
    except ValueError as err:
        raise SegattnError(f"--metrics {args.metrics}: {err}") from err
    if not args.nsd_tolerance >= 0:
        raise SegattnError(f"--nsd-tolerance must be >= 0 mm, got {args.nsd_tolerance}")
    labels = missing = None
    if args.dataset_json:
        labels = read_label_names(args.dataset_json)
        missing = read_missing_labels(args.dataset_json)
    result = evaluate_folders(
        args.pred,
        args.labels,
        labels,
        allow_missing=args.allow_missing,
        missing_labels=missing,
        metrics=metrics,
        nsd_tolerance=args.nsd_tolerance,
    )
    if result.missing:
        print(f"skipped {len(result.missing)} case(s) without a prediction")
    print(result.format_table())
    if args.csv:
        result.write_csv(Path(args.csv))
    return 0
