"""Samples as a pure function of (seed, epoch, index); skipping trained batches; find `last`."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from jsonargparse import Namespace
from torch.utils.data import DataLoader

from segattn.errors import SegattnError
from segattn.training.augment import random_transforms
from segattn.training.cli import _logger_follows_root_dir
from segattn.training.datamodule import SliceDataset
from segattn.training.resume import find_last_checkpoint, resolve_last_checkpoint
from segattn.training.sampling import (
    EpochSampler,
    ResumableBatchSampler,
    ResumableDataLoader,
    SeededDataset,
    epoch_permutation,
    next_batch_position,
    sample_seed,
)


def _dataset(seed: int = 0) -> SeededDataset:
    gen = torch.Generator().manual_seed(0)
    volumes = [
        (
            torch.randn(1, 9, 11, 13, generator=gen),
            torch.randint(0, 3, (1, 9, 11, 13), generator=gen),
        )
        for _ in range(2)
    ]
    transform = random_transforms(2, [8, 8], {"affine_prob": 1.0, "noise_prob": 1.0})
    return SeededDataset(SliceDataset(volumes, axis=1, transform=transform), seed=seed)


def test_sample_seed_and_permutation_are_pure() -> None:
    assert sample_seed(0, 1, 2) == sample_seed(0, 1, 2)
    assert len({sample_seed(0, 1, 2), sample_seed(0, 2, 1), sample_seed(1, 1, 2)}) == 3
    assert epoch_permutation(3, 1, 50) == epoch_permutation(3, 1, 50)
    assert sorted(epoch_permutation(3, 1, 50)) == list(range(50))
    assert epoch_permutation(3, 1, 50) != epoch_permutation(3, 2, 50)
    with pytest.raises(ValueError):
        sample_seed(0, -1, 0)


def test_a_sample_does_not_depend_on_what_came_before() -> None:
    data = _dataset()
    keys = [(0, 3), (1, 3), (0, 5), (0, 3)]
    first = [data[k]["image"] for k in keys]
    for k in reversed(keys):  # other order, fresh draws in between
        data[(7, 1)]
        assert torch.equal(data[k]["image"], first[keys.index(k)])
    assert not torch.equal(first[0], first[1])  # another epoch, another augmentation
    assert not torch.equal(data[(0, 3)]["image"], _dataset(seed=1)[(0, 3)]["image"])


def test_workers_give_the_same_batches() -> None:
    data = _dataset()
    batches = []
    for workers in (0, 2):
        loader = ResumableDataLoader(data, batch_size=4, seed=5, num_workers=workers)
        loader.batch_sampler.sampler.set_epoch(2)  # type: ignore[union-attr]
        batches.append([b["image"] for b in loader])
    assert len(batches[0]) == len(data) // 4 + 1
    assert all(torch.equal(a, b) for a, b in zip(*batches))


def test_loader_resumes_after_the_trained_batches() -> None:
    data = _dataset()
    full = ResumableDataLoader(data, batch_size=3, seed=1, progress=lambda: (1, 2))
    full.batch_sampler.sampler.set_epoch(1)  # type: ignore[union-attr]
    expected = [b["image"] for b in full]
    state = full.state_dict()
    assert state == {"epoch": 1, "batches": 2}
    resumed = ResumableDataLoader(data, batch_size=3, seed=1)
    resumed.load_state_dict(state)  # epoch restored before Lightning would set it
    rest = [b["image"] for b in resumed]
    assert len(rest) == len(expected) - 2
    assert all(torch.equal(a, b) for a, b in zip(rest, expected[2:]))
    assert len(list(resumed)) == len(expected)  # the skip applies once


def _epoch_batches(epoch: int, workers: int = 0) -> list[torch.Tensor]:
    loader = ResumableDataLoader(_dataset(), batch_size=3, seed=1, num_workers=workers)
    loader.batch_sampler.sampler.set_epoch(epoch)  # type: ignore[union-attr]
    return [b["image"] for b in loader]


@pytest.mark.parametrize("workers", [0, 2])
def test_resumed_pass_skips_with_workers(workers: int) -> None:
    # a worker iterator draws from the batch sampler twice as it starts: both draws skip
    expected = _epoch_batches(1)
    resumed = ResumableDataLoader(_dataset(), batch_size=3, seed=1, num_workers=workers)
    resumed.load_state_dict({"epoch": 1, "batches": 2})
    rest = [b["image"] for b in resumed]
    assert len(rest) == len(expected) - 2
    assert all(torch.equal(a, b) for a, b in zip(rest, expected[2:]))


@pytest.mark.parametrize("workers", [0, 2])
def test_each_pass_takes_its_epoch_from_the_trainer(workers: int) -> None:
    # Lightning makes the first iterator of a run resumed at an epoch end before it sets the
    # epoch (without loading the loader state), and workers fetch at once: the pass must still
    # be the trainer's epoch, here 2, and keep it when set_epoch comes late
    position = [2, 0]
    loader = ResumableDataLoader(
        _dataset(), batch_size=3, seed=1, num_workers=workers, progress=lambda: tuple(position)
    )
    batches = iter(loader)
    loader.batch_sampler.sampler.set_epoch(5)  # type: ignore[union-attr]
    got = [b["image"] for b in batches]
    expected = _epoch_batches(2)
    assert len(got) == len(expected)
    assert all(torch.equal(a, b) for a, b in zip(got, expected))
    assert not torch.equal(expected[0], _epoch_batches(0)[0])


def test_an_epoch_counted_as_unfinished_resumes_at_the_next() -> None:
    # earlier checkpoints saved after an epoch's last batch (and its validation) held that
    # epoch and its batch count; the trainer's restored counters say the next epoch is due
    loader = ResumableDataLoader(_dataset(), batch_size=3, seed=1, progress=lambda: (2, 0))
    loader.load_state_dict({"epoch": 1, "batches": 4})
    got = [b["image"] for b in loader]
    expected = _epoch_batches(2)
    assert len(got) == len(expected)
    assert all(torch.equal(a, b) for a, b in zip(got, expected))


def _trainer(
    epochs: tuple[int, int], batches: int, per_epoch: float = 4, last: bool = False
) -> SimpleNamespace:
    """A stand-in for Lightning's fit loop counters: epochs (started, processed), batches of
    the current epoch processed, batches per epoch, and the restored ``is_last_batch``."""
    started, processed = epochs
    return SimpleNamespace(
        num_training_batches=per_epoch,
        fit_loop=SimpleNamespace(
            epoch_progress=SimpleNamespace(
                current=SimpleNamespace(started=started, processed=processed)
            ),
            epoch_loop=SimpleNamespace(
                batch_progress=SimpleNamespace(
                    current=SimpleNamespace(processed=batches), is_last_batch=last
                )
            ),
        ),
    )


@pytest.mark.parametrize(
    ("epochs", "batches", "position"),
    [
        pytest.param((0, 0), 0, (0, 0), id="before-training"),
        pytest.param((2, 1), 3, (1, 3), id="mid-epoch"),
        pytest.param((2, 1), 4, (2, 0), id="after-the-last-batch-and-validation"),
        pytest.param((2, 2), 4, (2, 0), id="epoch-end-hooks"),
        pytest.param((3, 2), 0, (2, 0), id="next-epoch-started"),
    ],
)
def test_next_batch_position(epochs: tuple[int, int], batches: int, position: tuple) -> None:
    assert next_batch_position(_trainer(epochs, batches)) == position


def test_next_batch_position_before_the_batch_count_is_known() -> None:
    # right after a checkpoint is restored Lightning has not counted the epoch's batches yet;
    # the restored ``is_last_batch`` tells that the epoch's batches were all trained
    unknown = float("inf")
    assert next_batch_position(_trainer((2, 1), 2, unknown, last=True)) == (2, 0)
    assert next_batch_position(_trainer((2, 1), 2, unknown, last=False)) == (1, 2)


def test_batch_sampler_is_a_batch_sampler() -> None:
    sampler = ResumableBatchSampler(EpochSampler(7, shuffle=False), batch_size=3, drop_last=False)
    assert list(sampler) == [[(0, 0), (0, 1), (0, 2)], [(0, 3), (0, 4), (0, 5)], [(0, 6)]]
    plain = DataLoader(range(7), batch_sampler=ResumableBatchSampler(range(7), 3, True))
    assert [b.tolist() for b in plain] == [[0, 1, 2], [3, 4, 5]]


def test_find_last_checkpoint(tmp_path: Path) -> None:
    run = tmp_path / "lightning_logs"
    assert find_last_checkpoint([run]) is None
    with pytest.raises(SegattnError, match="nothing to resume"):
        resolve_last_checkpoint([run])
    older = run / "version_0" / "checkpoints" / "last.ckpt"
    newer = run / "version_3" / "checkpoints" / "last-step.ckpt"
    empty = run / "version_4" / "checkpoints"
    for path in (older, newer):
        path.parent.mkdir(parents=True)
        path.write_bytes(b"x")
    empty.mkdir(parents=True)
    (empty / ".tmp-1-ab-last.ckpt").write_bytes(b"half")  # a killed write is never picked
    (run / "version_0" / "checkpoints" / "best-epoch001.ckpt").write_bytes(b"x")
    os.utime(older, ns=(1, 1))
    assert resolve_last_checkpoint([run]) == newer
    os.utime(older, ns=(2 * 10**18, 2 * 10**18))
    assert resolve_last_checkpoint([run, tmp_path / "missing"]) == older


def test_logger_follows_default_root_dir() -> None:
    def config() -> Namespace:
        logger = Namespace(class_path="CSVLogger", init_args=Namespace(save_dir="runs/a"))
        return Namespace(trainer=Namespace(default_root_dir="/x", logger=logger))

    cfg = config()
    _logger_follows_root_dir(cfg, ["--trainer.default_root_dir", "/x"])
    assert cfg.trainer.logger.init_args.save_dir == "/x"
    for args in (
        ["--trainer.default_root_dir=/x", "--trainer.logger.init_args.save_dir", "/y"],
        [],
    ):
        cfg = config()
        _logger_follows_root_dir(cfg, args)
        assert cfg.trainer.logger.init_args.save_dir == "runs/a"
