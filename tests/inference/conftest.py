"""Fixtures for the inference tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from inference_helpers import checkpoint_meta, save_checkpoint


@pytest.fixture
def make_ckpt(tmp_path: Path) -> Callable[..., Path]:
    """``make_ckpt(name="m.ckpt", seed=0, **checkpoint_meta kwargs) -> path``."""

    def make(name: str = "model.ckpt", seed: int = 0, **kwargs: Any) -> Path:
        return save_checkpoint(tmp_path / name, checkpoint_meta(**kwargs), seed)

    return make
