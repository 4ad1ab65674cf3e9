"""Fixtures for the inference tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from inference_helpers import checkpoint_meta, save_checkpoint


@pytest.fixture
def make_ckpt(tmp_path: Path) -> Callable[..., Path]:
    """``make_ckpt(name="m.ckpt", seed=0, **checkpoint_meta kwargs) -> path``."""

    def make(name: str = "model.ckpt", seed: int = 0, **kwargs: Any) -> Path:
        return save_checkpoint(tmp_path / name, checkpoint_meta(**kwargs), seed)

    return make


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """Tiny tensors gain nothing from threads, and on a loaded machine OpenMP barriers make
    2-thread convolutions of a few voxels ~50x slower than 1 thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
