"""``segattn preprocess --config FILE --data.root DIR [--data.* ...]``: fill the on-disk cache.

Writes every training case of the dataset, oriented, resampled and normalised as the config's
``data`` section says, to the preprocessed cache that ``segattn train`` then reads (see
:mod:`segattn.training.cache`). Cases already cached with the same settings are kept.
"""

from __future__ import annotations

import argparse
import warnings
from collections.abc import Sequence
from typing import Any


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "preprocess",
        help="write the preprocessed cache that training reads (see `segattn preprocess --help`)",
        description="Preprocess a dataset into the on-disk cache: segattn preprocess --config "
        "configs/unet3d_scse.yaml --data.root DIR [--data.spacing '[1.5, 1.5, 1.5]'] "
        "[--data.cache_dir DIR]",
        add_help=False,
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    return run_preprocess([])


def run_preprocess(argv: Sequence[str]) -> int:
    """Parse ``argv`` like ``segattn train`` does, then build the data module's cache."""
    from segattn.training.cli import SegattnCLI
    from segattn.training.datamodule import SegDataModule
    from segattn.training.system import SegmentationSystem

    warnings.filterwarnings("ignore", ".*LightningCLI's args parameter.*")
    cli = SegattnCLI(
        SegmentationSystem,
        SegDataModule,
        args=list(argv),
        run=False,
        save_config_callback=None,
        parser_kwargs={"prog": "segattn preprocess"},
    )
    data = cli.datamodule
    if not isinstance(data, SegDataModule):
        raise TypeError(f"expected a SegDataModule, got {type(data).__name__}")
    cache = data.preprocessed_cache
    written = data.build_cache()
    total = len(data.dataset.training)
    print(f"{written} case(s) preprocessed, {total - written} already cached: {cache.folder}")
    return 0
