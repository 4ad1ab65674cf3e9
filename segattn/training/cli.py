"""LightningCLI wiring: ``segattn train --config FILE`` runs ``fit`` with the data-derived links."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from segattn.training.datamodule import SegDataModule
from segattn.training.system import SegmentationSystem


class SegattnCLI(LightningCLI):
    """LightningCLI whose model takes channels, classes, dimensionality and label names from the
    DataModule (``dataset.json``), so one YAML trains on any dataset given ``--data.root``."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        for source, target in (
            ("data.spatial_dims", "model.spatial_dims"),
            ("data.in_channels", "model.in_channels"),
            ("data.num_classes", "model.num_classes"),
            ("data.inference_meta", "model.data_meta"),
        ):
            parser.link_arguments(source, target, apply_on="instantiate")


def run_training_cli(args: Sequence[str]) -> int:
    """``fit`` with ``args`` (``--config FILE``, ``--data.root DIR``, ``--trainer.*``, ...)."""
    # we hand LightningCLI our own argv slice on purpose; its warning about sys.argv is noise
    warnings.filterwarnings("ignore", ".*LightningCLI's args parameter.*")
    SegattnCLI(
        SegmentationSystem,
        SegDataModule,
        args=["fit", *args],
        save_config_kwargs={"overwrite": True},
        parser_kwargs={"fit": {"prog": "segattn train"}},
    )
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    return 0
