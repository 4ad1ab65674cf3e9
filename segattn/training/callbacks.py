"""Callbacks that make a resumed run continue exactly where the checkpoint left it.

- :class:`StepCheckpoint` refreshes ``last-step.ckpt`` every ``N`` training steps, except after
  the last batch of an epoch: Lightning resumes such a checkpoint without the epoch's validation
  and scheduler step, so the epoch-end ``last.ckpt`` (after validation) or the step before it is
  used instead. Its own name keeps it from racing the epoch-end ``ModelCheckpoint`` for
  ``last.ckpt`` (which would then write ``last-v1.ckpt``).
- :class:`ResumableEpochMetrics` stores the running sums behind the epoch means of values logged
  with ``on_epoch=True`` (e.g. ``train/loss_epoch``) in mid-epoch checkpoints and adds them back
  after resuming; Lightning itself would average only the batches after the resume.
- :class:`LastCheckpointAtEnd` keeps ``last.ckpt`` at the latest epoch end and at the batch where
  ``max_steps`` or ``max_time`` stops training, in a state that resumes exactly.
- :class:`ValidateLastEpoch` validates the run's last epoch when ``check_val_every_n_epoch``
  would skip it, so a run always ends with its final Dice (and its best checkpoint judged on it).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback, Checkpoint, ModelCheckpoint

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


class LastCheckpointAtEnd(Checkpoint):
    """Keep ``last.ckpt`` at the latest epoch end and at the last step of training.

    Lightning's ``ModelCheckpoint(save_last=True)`` writes ``last.ckpt`` only when it saves a
    top-k checkpoint (lightning 2.6: when the monitored metric improved), and at the end of
    training only if it never wrote one. A run whose Dice stalls, or that validates every N
    epochs, would resume after a kill from an old ``last.ckpt``, and a run stopped by
    ``max_steps`` or ``max_time`` would lose its last steps. So every such callback whose
    ``last.ckpt`` is older than the current step gets it written through the trainer (atomically,
    with the loop state ``--ckpt_path last`` resumes from):

    - after every training epoch (after its validation);
    - after the batch at which training stops in the middle of an epoch (``max_steps`` reached,
      or ``trainer.should_stop`` set by ``max_time``): Lightning marks the cut epoch as finished
      before ``on_train_end``, so a checkpoint written there would resume at the next epoch and
      skip the cut epoch's other batches; written here, a resume trains them;
    - when training ends between two epochs (e.g. ``max_steps`` at an epoch's last batch).

    A :class:`~lightning.pytorch.callbacks.Checkpoint`, so Lightning runs its epoch-end and
    train-end hooks after the ``ModelCheckpoint`` callbacks added before it, which have then
    saved what they save at that step.
    """

    def __init__(self) -> None:
        # the step of this callback's latest write per file; Lightning's own
        # ``_last_global_step_saved`` is left alone, as ``ModelCheckpoint`` would skip a
        # validation checkpoint at that step
        self._steps: dict[str, int] = {}
        # callbacks whose ``save_last`` is off until training ends (see ``on_train_batch_end``)
        self._held: list[tuple[ModelCheckpoint, Any]] = []

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        if trainer.fit_loop.epoch_loop.batch_progress.is_last_batch:
            return  # the epoch-end hooks follow
        max_steps = trainer.max_steps
        # Lightning honours ``should_stop`` once min_epochs/min_steps are reached (private flag)
        stopping = trainer.should_stop and getattr(trainer.fit_loop, "_can_stop_early", True)
        if stopping or (max_steps is not None and 0 <= max_steps <= trainer.global_step):
            self._refresh(trainer, "training stops in the middle of an epoch")
            # Lightning validates at a batch where training stops early; a ModelCheckpoint
            # saving there would replace last.ckpt with a mid-epoch validation state that
            # resumes with its logging steps off by one: it keeps its top-k files only
            for callback in _last_writers(trainer):
                if self._last_step(callback) >= trainer.global_step:
                    self._held.append((callback, callback.save_last))
                    callback.save_last = False

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._refresh(trainer, f"epoch {trainer.current_epoch} ended")

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        for callback, save_last in self._held:
            callback.save_last = save_last
        self._held = []
        if _cut_short(trainer):
            # written at the stopping batch, unless something stopped training after this
            # callback's batch hook ran (e.g. the LightningModule's own ``on_train_batch_end``)
            for callback in _last_writers(trainer):
                if self._last_step(callback) < trainer.global_step:
                    log.warning(
                        "training stopped in the middle of an epoch at step %d after this step's "
                        "checkpoint hooks: %s holds step %d",
                        trainer.global_step,
                        _last_path(callback),
                        self._last_step(callback),
                    )
            return
        self._refresh(trainer, "training ended")

    def _refresh(self, trainer: pl.Trainer, when: str) -> None:
        if trainer.sanity_checking or getattr(trainer, "fast_dev_run", False):
            return
        for callback in _last_writers(trainer):
            if self._last_step(callback) >= trainer.global_step:
                continue  # written at this step
            path = _last_path(callback)
            trainer.save_checkpoint(path, weights_only=False)  # the full state, for resuming
            # the callback's own file from now on: Lightning overwrites it instead of writing
            # "last-v1.ckpt" beside it, and does not write it again at the end of training
            callback.last_model_path = str(path)
            callback._last_checkpoint_saved = str(path)
            self._steps[str(path)] = trainer.global_step
            log.info("%s at step %d: wrote %s", when, trainer.global_step, path)

    def _last_step(self, callback: ModelCheckpoint) -> int:
        """The step ``last.ckpt`` of ``callback`` holds (-1: not written by this run)."""
        if not getattr(callback, "_last_checkpoint_saved", ""):
            return -1
        path = str(_last_path(callback))
        return max(int(getattr(callback, "_last_global_step_saved", -1)), self._steps.get(path, -1))


def _last_writers(trainer: pl.Trainer) -> list[ModelCheckpoint]:
    """The ``ModelCheckpoint`` callbacks that keep a ``last.ckpt`` (not :class:`StepCheckpoint`)."""
    writers = []
    for callback in trainer.checkpoint_callbacks:
        if not isinstance(callback, ModelCheckpoint) or isinstance(callback, StepCheckpoint):
            continue
        # Lightning's bookkeeping is private: without these attributes nothing is written
        if not callback.save_last or callback.dirpath is None:
            continue
        if not hasattr(callback, "_last_global_step_saved"):
            continue
        writers.append(callback)
    return writers


def _last_path(callback: ModelCheckpoint) -> Path:
    assert callback.dirpath is not None
    return Path(callback.dirpath) / f"{callback.CHECKPOINT_NAME_LAST}{callback.FILE_EXTENSION}"


def _cut_short(trainer: pl.Trainer) -> bool:
    """Training ended after some but not all batches of its last epoch."""
    done: Any = trainer.fit_loop.epoch_loop.batch_progress.current
    return 0 < int(done.processed) < trainer.num_training_batches


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
