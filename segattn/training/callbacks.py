"""Callbacks that make a resumed run continue exactly where the checkpoint left it.

- :class:`StepCheckpoint` refreshes ``last-step.ckpt`` every ``N`` training steps, except after
  the last batch of an epoch: Lightning resumes such a checkpoint without the epoch's validation
  and scheduler step, so the epoch-end ``last.ckpt`` (after validation) or the step before it is
  used instead. Its own name keeps it from racing the epoch-end ``ModelCheckpoint`` for
  ``last.ckpt`` (which would then write ``last-v1.ckpt``).
- :class:`ResumableEpochMetrics` stores the running sums behind the epoch means of values logged
  with ``on_epoch=True`` (e.g. ``train/loss_epoch``) in mid-epoch checkpoints and adds them back
  after resuming; Lightning itself would average only the batches after the resume.
- :class:`LastCheckpointAtEnd` writes ``last.ckpt`` once more when training ends after steps
  that no checkpoint holds (a ``max_time`` stop between two validations).
- :class:`ValidateLastEpoch` validates the run's last epoch when ``check_val_every_n_epoch``
  would skip it, so a run always ends with its final Dice (and its best checkpoint judged on it).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

__all__ = ["LastCheckpointAtEnd", "ResumableEpochMetrics", "StepCheckpoint", "ValidateLastEpoch"]

_KEY = "segattn_epoch_metrics"

log = logging.getLogger(__name__)


class StepCheckpoint(ModelCheckpoint):
    """``last-step.ckpt`` every ``every_n_train_steps`` steps (no top-k files), skipping epoch ends.

    Args:
        every_n_train_steps: save every this many optimiser steps (>= 1).
        **kwargs: other ``ModelCheckpoint`` arguments (``dirpath``, ...).
    """

    def __init__(self, every_n_train_steps: int, **kwargs: Any) -> None:
        if every_n_train_steps < 1:
            raise ValueError(f"every_n_train_steps must be >= 1, got {every_n_train_steps}")
        kwargs.setdefault("save_top_k", 0)
        kwargs.setdefault("save_last", True)
        super().__init__(every_n_train_steps=every_n_train_steps, **kwargs)
        self.CHECKPOINT_NAME_LAST = "last-step"

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        if trainer.fit_loop.epoch_loop.batch_progress.is_last_batch:
            return
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)


class ResumableEpochMetrics(Callback):
    """Carries the partial epoch sums of the training metrics through a mid-epoch checkpoint."""

    def __init__(self) -> None:
        self._pending: dict[str, Any] | None = None

    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        sums = {}
        # Lightning keeps the per-epoch accumulators in the training loop's result collection
        for key, metric in trainer.fit_loop.epoch_loop._results.items():
            meta = getattr(metric, "meta", None)
            if meta is None or not meta.on_epoch or not getattr(metric, "is_tensor", False):
                continue
            if not (meta.is_mean_reduction or meta.is_sum_reduction):
                continue
            state = {"value": metric.value.detach().cpu().clone()}
            if meta.is_mean_reduction:
                state["cumulated_batch_size"] = metric.cumulated_batch_size.detach().cpu().clone()
            sums[key] = state
        epoch, batches = _progress(trainer)
        checkpoint[_KEY] = {"epoch": epoch, "batches": batches, "sums": sums}

    def on_load_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        self._pending = checkpoint.get(_KEY)

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        pending, self._pending = self._pending, None
        if not pending or (pending["epoch"], pending["batches"] + 1) != _progress(trainer):
            return  # not the first batch after a mid-epoch resume
        results = trainer.fit_loop.epoch_loop._results
        for key, state in pending["sums"].items():
            metric = results.get(key)
            if metric is None:
                continue
            # same additions in the same order as the uninterrupted run: sum + this batch
            metric.value = state["value"].to(metric.value) + metric.value
            if "cumulated_batch_size" in state:
                metric.cumulated_batch_size = (
                    state["cumulated_batch_size"].to(metric.cumulated_batch_size)
                    + metric.cumulated_batch_size
                )


def _progress(trainer: pl.Trainer) -> tuple[int, int]:
    loop = trainer.fit_loop
    # the loops' trackers are typed loosely; both have ``processed`` at run time
    epoch: Any = loop.epoch_progress.current
    batches: Any = loop.epoch_loop.batch_progress.current
    return int(epoch.processed), int(batches.processed)


class LastCheckpointAtEnd(Callback):
    """Write ``last.ckpt`` again when training ends after steps that no checkpoint holds.

    Lightning's ``ModelCheckpoint(save_last=True)`` writes ``last.ckpt`` when it saves a checkpoint
    (after validation, with a monitored metric), and at the end of training only if it never wrote
    one. A run stopped by ``max_time`` or ``max_epochs`` between two validations (e.g.
    ``check_val_every_n_epoch: 20``) would otherwise lose its last steps: here every such callback
    whose ``last.ckpt`` is older than the final step writes it once more, through the trainer (so
    atomically, with the loop state that ``--ckpt_path last`` resumes from).
    """

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        for callback in trainer.checkpoint_callbacks:
            if not isinstance(callback, ModelCheckpoint) or isinstance(callback, StepCheckpoint):
                continue
            # Lightning saves at the end by itself when it never wrote a last checkpoint; its
            # bookkeeping is private, so without these attributes this callback does nothing
            written = getattr(callback, "_last_checkpoint_saved", "")
            step = getattr(callback, "_last_global_step_saved", trainer.global_step)
            if not callback.save_last or not written or callback.dirpath is None:
                continue
            if step >= trainer.global_step:
                continue
            path = (
                Path(callback.dirpath) / f"{callback.CHECKPOINT_NAME_LAST}{callback.FILE_EXTENSION}"
            )
            trainer.save_checkpoint(path, weights_only=False)  # the full state, for resuming
            log.info(
                "training ended at step %d after the last checkpoint: wrote %s",
                trainer.global_step,
                path,
            )


class ValidateLastEpoch(Callback):
    """Validate epoch ``max_epochs - 1`` even when ``check_val_every_n_epoch`` skips it.

    Lightning validates epochs whose number plus one is a multiple of
    ``check_val_every_n_epoch``; with 2 and ``--trainer.max_epochs 9`` the run would end on an
    unvalidated epoch. From the first batch of the last epoch (also after resuming in it) the
    trainer validates every epoch; the setting is restored when training ends.
    """

    def __init__(self) -> None:
        self._every: int | None = None

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        every, last = trainer.check_val_every_n_epoch, trainer.max_epochs
        if every is None or every <= 1 or last is None or last < 1:
            return
        if trainer.current_epoch == last - 1 and (trainer.current_epoch + 1) % every:
            self._every = every
            trainer.check_val_every_n_epoch = 1

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._every is not None:
            trainer.check_val_every_n_epoch = self._every
            self._every = None
