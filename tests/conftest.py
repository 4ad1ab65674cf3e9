"""Shared fixtures: tiny generated datasets, built once per test session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("MPLBACKEND", "Agg")
torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(scope="session")
def tiny_malc(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 6-case (5 train + 1 test) MALC-like phantom dataset at size 32, nnU-Net layout."""
    from segattn.data.phantoms import make_malc_dataset

    root = tmp_path_factory.mktemp("tiny_malc") / "Dataset001_MALC"
    make_malc_dataset(root, cases=6, size=32, seed=0, test_cases=1)
    return root
