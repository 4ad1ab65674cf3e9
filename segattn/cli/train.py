"""``segattn train --config FILE [--data.root DIR] [--trainer.* ...]``: LightningCLI ``fit``."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "train",
        help="train a model (LightningCLI fit; see `segattn train --help`)",
        description="Train with LightningCLI: segattn train --config configs/unet2d_scse.yaml "
        "--data.root DIR [--trainer.max_epochs N] [--model.attention cbam] ...",
        add_help=False,
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    return run_lightning_cli([])


def run_lightning_cli(argv: Sequence[str]) -> int:
    from segattn.training.cli import run_training_cli

    return run_training_cli(argv)
