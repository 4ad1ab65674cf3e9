"""``segattn evaluate``: Dice per structure and case between predictions and label maps."""

from __future__ import annotations

import argparse
from pathlib import Path

from segattn.evaluation import evaluate_folders, read_label_names, read_missing_labels


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "evaluate",
        help="Dice per structure between predicted and reference label maps",
        description=(
            "Match files of --pred and --labels by case name (file name without .nii/.nii.gz), "
            "print one row per structure (Dice mean ± population std over the cases where it is "
            "defined, and that number of cases) and a final line 'mean Dice: 0.xxx' (mean of "
            "the structure means). A structure absent from both prediction and label of a case "
            "scores nan there and is left out of the means; so does a structure that "
            'dataset.json lists as not annotated in that case ("missing_labels").'
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
        help="also write one row per case and structure, columns case,label,dice "
        "(label = structure name; dice is 'nan' when absent from prediction and label), plus "
        "'annotated' (yes/no) when dataset.json lists not-annotated structures",
    )
    parser.add_argument(
        "--allow-missing",
        action="store_true",
        help="skip label cases without a prediction instead of failing",
    )
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    labels = missing = None
    if args.dataset_json:
        labels = read_label_names(args.dataset_json)
        missing = read_missing_labels(args.dataset_json)
    result = evaluate_folders(
        args.pred, args.labels, labels, allow_missing=args.allow_missing, missing_labels=missing
    )
    if result.missing:
        print(f"skipped {len(result.missing)} case(s) without a prediction")
    print(result.format_table())
    if args.csv:
        result.write_csv(Path(args.csv))
    return 0
