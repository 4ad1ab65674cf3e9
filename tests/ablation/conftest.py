"""A tiny dataset (5 training + 3 test phantoms at 32^3) and a 2x2 grid (attention none/cse x
seeds 0/1, one epoch of two steps, widths 4/8) run once for the whole session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from ablation_helpers import ablate, write_grid


@pytest.fixture(scope="session")
def ablation_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from segattn.data.phantoms import make_malc_dataset

    root = tmp_path_factory.mktemp("ablation") / "Dataset001_MALC"
    make_malc_dataset(root, cases=8, size=32, seed=0, test_cases=3)
    return root


@pytest.fixture(scope="session")
def finished_grid(ablation_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The 2x2 grid run to the end with two parallel cells; returns its grid folder (the grid
    file is ``grid.yaml`` beside it)."""
    base = tmp_path_factory.mktemp("grid")
    grid = write_grid(base / "grid.yaml", ablation_data)
    out = base / "out"
    cwd = base / "cwd"  # the base YAML logs under runs/ of the cwd: nothing may land there
    cwd.mkdir()
    previous = Path.cwd()
    os.chdir(cwd)
    try:
        assert ablate(grid, out, "--jobs", "2") == 0
    finally:
        os.chdir(previous)
    return out
