"""DataLoader workers of training run at a lower CPU priority than the training loop."""

from __future__ import annotations

import functools
import os

import pytest
from torch.utils.data import DataLoader, Dataset

from segattn.training.datamodule import WORKER_NICENESS, SegDataModule, yield_cpu_to_training


class Niceness(Dataset):
    def __len__(self) -> int:
        return 2

    def __getitem__(self, index: int) -> int:
        return os.nice(0)


@pytest.mark.skipif(not hasattr(os, "nice"), reason="os.nice is POSIX")
def test_workers_are_niced_and_the_main_process_is_not() -> None:
    before = os.nice(0)
    loader = DataLoader(
        Niceness(), batch_size=None, num_workers=1, worker_init_fn=yield_cpu_to_training
    )
    assert list(loader) == [min(19, before + WORKER_NICENESS)] * 2
    assert os.nice(0) == before


@pytest.mark.skipif(not hasattr(os, "nice"), reason="os.nice is POSIX")
def test_niceness_is_the_data_modules_option() -> None:
    before = os.nice(0)
    init = functools.partial(yield_cpu_to_training, niceness=3)
    loader = DataLoader(Niceness(), batch_size=None, num_workers=1, worker_init_fn=init)
    assert list(loader) == [min(19, before + 3)] * 2
    assert SegDataModule(root="unused", worker_niceness=0).worker_niceness == 0
    for bad in (-1, 20, True):
        with pytest.raises(ValueError, match="worker_niceness must be 0 to 19"):
            SegDataModule(root="unused", worker_niceness=bad)
