"""LightningCLI wiring: ``segattn train --config FILE`` runs ``fit`` with the data-derived links.

On top of Lightning's ``fit`` our CLI

- writes checkpoints atomically (:class:`~segattn.training.checkpoint_io.AtomicCheckpointIO`);
- with ``--checkpoint_every_n_steps N`` also refreshes ``last.ckpt`` every ``N`` training steps;
- resolves ``--ckpt_path last`` to the newest ``last.ckpt`` of the run's earlier versions and
  fails if there is none (:mod:`segattn.training.resume`);
- points the logger at ``--trainer.default_root_dir`` when that flag is given and the logger's
  ``save_dir`` is not, so the flag moves logs and checkpoints together.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from segattn.allocator import keep_freed_memory
from segattn.training.callbacks import (
    LastCheckpointAtEnd,
    ResumableEpochMetrics,
    StepCheckpoint,
    ValidateLastEpoch,
)
from segattn.training.checkpoint_io import AtomicCheckpointIO
from segattn.training.datamodule import SegDataModule
from segattn.training.resume import resolve_last_checkpoint
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
        parser.add_argument(
            "--checkpoint_every_n_steps",
            type=int,
            default=0,
            help="also save last.ckpt every N training steps (0: at validation only)",
        )

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        self._raw_args = [str(a) for a in (args or [])]
        super().parse_arguments(parser, args)

    def before_instantiate_classes(self) -> None:
        config = self.config.get(self.subcommand) if self.subcommand else self.config
        if config is not None:
            _logger_follows_root_dir(config, getattr(self, "_raw_args", []))

    def fit(self, model: Any, **kwargs: Any) -> None:
        """``Trainer.fit`` with atomic checkpoints, step checkpoints and ``ckpt_path="last"``."""
        trainer = self.trainer
        if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:
            trainer.strategy.checkpoint_io = AtomicCheckpointIO()
        config = self.config.get(self.subcommand) if self.subcommand else self.config
        every = int(config.get("checkpoint_every_n_steps") or 0) if config is not None else 0
        if every < 0:
            raise ValueError(f"checkpoint_every_n_steps must be >= 0, got {every}")
        callbacks: list[Any] = trainer.callbacks  # type: ignore[attr-defined]
        if every:
            callbacks.append(StepCheckpoint(every))
        callbacks.insert(0, ResumableEpochMetrics())
        callbacks.append(LastCheckpointAtEnd())
        callbacks.append(ValidateLastEpoch())
        if kwargs.get("ckpt_path") == "last":
            kwargs["ckpt_path"] = str(resolve_last_checkpoint(_checkpoint_folders(trainer)))
        trainer.fit(model, **kwargs)


def _logger_follows_root_dir(config: Any, raw_args: Sequence[str]) -> None:
    """Set the logger's ``save_dir`` to ``trainer.default_root_dir`` if only the latter was given
    on the command line (our YAML files set both; Lightning lets ``save_dir`` win)."""
    given = " ".join(raw_args)
    if "--trainer.default_root_dir" not in given or "save_dir" in given:
        return
    trainer = config.get("trainer")
    loggers = trainer.get("logger") if trainer is not None else None
    for logger in loggers if isinstance(loggers, list) else [loggers]:
        init_args = getattr(logger, "init_args", None)
        if init_args is not None and "save_dir" in init_args:
            init_args["save_dir"] = trainer.get("default_root_dir")


def _checkpoint_folders(trainer: Any) -> list[Path]:
    """Where this run's earlier ``last.ckpt`` files can be: the logger's run folder (all its
    ``version_*``), explicit ``ModelCheckpoint`` folders, ``default_root_dir/checkpoints``."""
    folders = []
    for logger in trainer.loggers:
        root = getattr(logger, "root_dir", None)
        if root:
            folders.append(Path(root))
    for callback in trainer.checkpoint_callbacks:
        if getattr(callback, "dirpath", None):
            folders.append(Path(callback.dirpath))
    folders.append(Path(trainer.default_root_dir) / "checkpoints")
    return folders


def run_training_cli(args: Sequence[str]) -> int:
    """``fit`` with ``args`` (``--config FILE``, ``--data.root DIR``, ``--trainer.*``, ...)."""
    # we hand LightningCLI our own argv slice on purpose; its warning about sys.argv is noise
    warnings.filterwarnings("ignore", ".*LightningCLI's args parameter.*")
    keep_freed_memory()  # no page faults for the same tensors every step (segattn.allocator)
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
