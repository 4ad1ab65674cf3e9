"""Reproducible, resumable training samples.

Every training sample is a pure function of ``(seed, epoch, sample index)``:

- :class:`EpochSampler` orders the samples of an epoch by a permutation drawn from
  ``(seed, epoch)`` (or, given sampling weights, draws as many indices with replacement from
  ``(seed, epoch)``) and yields ``(epoch, index)`` keys;
- :class:`SeededDataset` re-seeds the random transforms from ``(seed, epoch, index)`` before it
  builds each sample, so the number of DataLoader workers and the order in which they run do not
  change what a sample looks like;
- :class:`ResumableBatchSampler` can skip the batches of an epoch that a checkpoint already
  trained on, and :class:`ResumableDataLoader` exposes that as Lightning's ``state_dict`` /
  ``load_state_dict`` interface, so ``--ckpt_path`` resumes mid-epoch with the very batches an
  uninterrupted run would have seen.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
from torch.utils.data import BatchSampler, DataLoader, Dataset, Sampler

# domain tags keep the shuffle stream and the per-sample streams apart
_SHUFFLE_TAG = 0
_SAMPLE_TAG = 1


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """The augmentation seed (``0 <= s < 2**32``) of sample ``index`` in ``epoch``.

    Raises:
        ValueError: a negative argument.
    """
    if min(seed, epoch, index) < 0:
        raise ValueError(f"seed, epoch and index must be >= 0, got {seed}, {epoch}, {index}")
    entropy = [int(seed), _SAMPLE_TAG, int(epoch), int(index)]
    return int(np.random.SeedSequence(entropy).generate_state(1)[0])


def _epoch_rng(seed: int, epoch: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed), _SHUFFLE_TAG, int(epoch)]))


def epoch_permutation(seed: int, epoch: int, n: int) -> list[int]:
    """The order of ``n`` samples in ``epoch``: a permutation drawn from ``(seed, epoch)``."""
    return [int(i) for i in _epoch_rng(seed, epoch).permutation(n)]


def epoch_draws(seed: int, epoch: int, weights: Sequence[float]) -> list[int]:
    """``len(weights)`` indices of ``epoch`` drawn with replacement, ``P(i) ~ weights[i]``,
    from ``(seed, epoch)``.

    Raises:
        ValueError: a negative weight, or no positive weight.
    """
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 1 or (w < 0).any() or not w.sum() > 0:
        raise ValueError("weights must be a 1D sequence of non-negative numbers, not all zero")
    return [int(i) for i in _epoch_rng(seed, epoch).choice(len(w), size=len(w), p=w / w.sum())]


class EpochSampler(Sampler):
    """Yields ``(epoch, index)`` for every index of a dataset of ``size`` samples.

    Args:
        size: number of samples.
        seed: seed of the per-epoch permutation.
        shuffle: permute per epoch (``False``: indices in order).
        weights: ``size`` sampling weights: each epoch then draws ``size`` indices with
            replacement, ``P(i) ~ weights[i]`` (e.g. class-balanced slices); ``shuffle`` is
            ignored.
    """

    def __init__(
        self,
        size: int,
        seed: int = 0,
        shuffle: bool = True,
        weights: Sequence[float] | None = None,
    ) -> None:
        if size < 0:
            raise ValueError(f"size must be >= 0, got {size}")
        if weights is not None and len(weights) != size:
            raise ValueError(f"{len(weights)} weights for {size} samples")
        self.size = int(size)
        self.seed = int(seed)
        self.shuffle = bool(shuffle)
        self.weights = None if weights is None else [float(w) for w in weights]
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Called by Lightning before every epoch."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.size

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = self.epoch
        order: Sequence[int]
        if self.weights is not None:
            order = epoch_draws(self.seed, epoch, self.weights)
        elif self.shuffle:
            order = epoch_permutation(self.seed, epoch, self.size)
        else:
            order = range(self.size)
        for index in order:
            yield (epoch, int(index))


class SeededDataset(Dataset):
    """Wraps a dataset whose ``transform`` is a MONAI ``Randomizable`` (e.g. ``Compose``).

    ``dataset[(epoch, i)]`` seeds ``transform`` with :func:`sample_seed` ``(seed, epoch, i)`` and
    returns ``base[i]``; a plain integer key means epoch 0.

    Args:
        base: dataset with a ``transform`` attribute that has ``set_random_state(seed=...)``.
        seed: the run's seed.
    """

    def __init__(self, base: Any, seed: int = 0) -> None:
        if not callable(getattr(getattr(base, "transform", None), "set_random_state", None)):
            raise ValueError(f"{type(base).__name__} has no transform with set_random_state()")
        self.base = base
        self.seed = int(seed)

    def __len__(self) -> int:
        return len(self.base)

    def __getattr__(self, name: str) -> Any:
        # attributes of the wrapped dataset (``volumes``, ``axis``, ...); ``base`` itself is
        # excluded so unpickling in DataLoader workers cannot recurse
        if name == "base":
            raise AttributeError(name)
        return getattr(self.base, name)

    def __getitem__(self, key: int | tuple[int, int]) -> Any:
        epoch, index = key if isinstance(key, tuple) else (0, key)
        self.base.transform.set_random_state(seed=sample_seed(self.seed, epoch, index))
        return self.base[index]


class ResumableBatchSampler(BatchSampler):
    """A ``BatchSampler`` whose passes can start after the first ``skip_batches`` batches.

    The signature is ``BatchSampler``'s, so Lightning can re-create it around a distributed
    sampler. ``iter()`` draws the epoch's order at once: the epoch in force when the iterator is
    made decides the batches, even if ``set_epoch`` is called again before the first one is taken.
    :class:`ResumableDataLoader` sets ``skip_batches`` for the one pass that resumes an epoch.
    """

    def __init__(self, sampler: Any, batch_size: int, drop_last: bool) -> None:
        super().__init__(sampler, batch_size, drop_last)
        self.skip_batches = 0

    def __iter__(self) -> Iterator[list[Any]]:
        _forward_epoch(self.sampler)
        keys = list(self.sampler)
        size = self.batch_size
        stop = len(keys) - len(keys) % size if self.drop_last else len(keys)
        return iter([keys[i : i + size] for i in range(self.skip_batches * size, stop, size)])


def _forward_epoch(sampler: Any) -> None:
    """Under DDP Lightning wraps our sampler in a ``DistributedSamplerWrapper`` and sets the
    epoch on the wrapper only; hand it on to the wrapped :class:`EpochSampler`."""
    inner = getattr(getattr(sampler, "dataset", None), "_sampler", None)
    epoch = getattr(sampler, "epoch", None)
    if isinstance(inner, EpochSampler) and epoch is not None:
        inner.set_epoch(int(epoch))


def next_batch_position(trainer: Any) -> tuple[int, int]:
    """``(epoch, batches of it already trained)`` of the next batch a Lightning trainer trains.

    Read from the fit loop's progress counters at any point where Lightning saves a checkpoint:
    mid-epoch, after the last batch of an epoch (before or after its validation), at the epoch's
    end hooks and when training ends. Once an epoch has trained all its batches the position is
    the first batch of the next one, whatever the counters of the finished epoch still say.
    """
    loop = trainer.fit_loop
    # the loops' trackers are typed loosely; they have these counters at run time
    epoch: Any = loop.epoch_progress.current
    progress: Any = loop.epoch_loop.batch_progress
    if int(epoch.processed) >= int(epoch.started):
        return int(epoch.processed), 0  # between epochs
    done = int(progress.current.processed)
    # ``is_last_batch`` is restored from a checkpoint before the batch count is known again
    if done >= trainer.num_training_batches or (done and progress.is_last_batch):
        return int(epoch.processed) + 1, 0
    return int(epoch.processed), done


def _set_epoch(sampler: Any, epoch: int) -> None:
    set_epoch = getattr(sampler, "set_epoch", None)
    if callable(set_epoch):
        set_epoch(int(epoch))


class ResumableDataLoader(DataLoader):
    """A DataLoader over :class:`EpochSampler` keys whose position Lightning checkpoints.

    ``state_dict()`` records the position of the next batch to train, ``(epoch, batches of it
    already trained)``, read from the trainer through ``progress``; ``load_state_dict()`` makes
    the next pass start there. Every pass (``iter()``) sets the epoch itself, from the loaded
    position or else from ``progress``: Lightning creates the first iterator of a run before it
    sets the epoch, and worker processes fetch their first batches at once, so a run resumed at
    an epoch end would otherwise begin with batches of epoch 0.

    Args:
        dataset: a dataset taking ``(epoch, index)`` keys, e.g. :class:`SeededDataset`.
        batch_size: samples per batch.
        seed: seed of the per-epoch order.
        shuffle: permute the samples per epoch.
        weights: per-sample sampling weights (see :class:`EpochSampler`), or None.
        progress: returns ``(epoch, batches of it already trained)`` of the next batch the running
            trainer will train (``(e + 1, 0)`` once epoch ``e`` has trained all its batches).
        **kwargs: other ``DataLoader`` arguments (``num_workers``, ``collate_fn``, ...).
    """

    def __init__(
        self,
        dataset: Any,
        batch_size: int = 1,
        seed: int = 0,
        shuffle: bool = True,
        weights: Sequence[float] | None = None,
        progress: Callable[[], tuple[int, int]] | None = None,
        drop_last: bool = False,
        batch_sampler: Any = None,
        **kwargs: Any,
    ) -> None:
        if batch_sampler is None:
            batch_sampler = ResumableBatchSampler(
                EpochSampler(len(dataset), seed=seed, shuffle=shuffle, weights=weights),
                batch_size,
                drop_last,
            )
        self.seed = seed
        self.shuffle = shuffle
        self.progress = progress
        self._resume_at: tuple[int, int] | None = None
        super().__init__(dataset, batch_sampler=batch_sampler, **kwargs)

    def state_dict(self) -> dict[str, int]:
        epoch, batches = self.progress() if self.progress is not None else (0, 0)
        return {"epoch": int(epoch), "batches": int(batches)}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self._resume_at = int(state["epoch"]), int(state["batches"])

    def __iter__(self) -> Any:
        batch_sampler = self.batch_sampler
        if self._resume_at is not None:
            (epoch, skip), self._resume_at = self._resume_at, None
            trainer_at = self.progress() if self.progress is not None else None
            if trainer_at is not None and trainer_at[0] > epoch:
                # a state saved after an epoch's last batch by earlier segattn code, which counted
                # that epoch's batches instead of pointing at the next epoch
                epoch, skip = trainer_at
        elif self.progress is not None:
            epoch, skip = self.progress()[0], 0
        else:
            return super().__iter__()  # the epoch set by ``set_epoch``
        _set_epoch(getattr(batch_sampler, "sampler", None), epoch)
        if not isinstance(batch_sampler, ResumableBatchSampler):
            return super().__iter__()
        # a worker iterator draws from the batch sampler twice as it starts: skip in both
        batch_sampler.skip_batches = skip
        try:
            return super().__iter__()
        finally:
            batch_sampler.skip_batches = 0
