"""Helpers of the ablation tests: a grid file with a tiny schedule, the CLI call."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from segattn.cli.main import main

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
TINY = {
    "trainer.max_epochs": 1,
    "trainer.limit_train_batches": 2,
    "trainer.limit_val_batches": 2,
    "trainer.num_sanity_val_steps": 0,
    "trainer.accelerator": "cpu",
    "trainer.log_every_n_steps": 1,
    "model.features": [4, 8],
    "data.batch_size": 4,
    "data.num_workers": 0,
}
AXES = {"model.attention": [None, "cse"], "seed_everything": [0, 1]}


def write_grid(path: Path, data_root: Path, **changes: Any) -> Path:
    """A grid file over configs/unet2d_scse.yaml with the tiny schedule; ``changes`` replace
    top-level keys."""
    grid = {
        "base": str(CONFIGS / "unet2d_scse.yaml"),
        "data_root": str(data_root),
        "test": {"images": "imagesTs", "labels": "labelsTs"},
        "metrics": ["dice", "hd95", "nsd"],
        "axes": AXES,
        "baseline": {"model.attention": None},
        "overrides": TINY,
        **changes,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(grid, sort_keys=False))
    return path


def ablate(grid: Path, out: Path, *extra: str) -> int:
    return main(
        ["ablate", "--config", str(grid), "--out", str(out), "--threads-per-job", "1", *extra]
    )
