"""ValidateLastEpoch: a run validating every N epochs still validates its last one."""

from __future__ import annotations

import csv
import warnings
from pathlib import Path

import torch

from segattn.training.cli import run_training_cli

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "unet2d_scse.yaml"


def _train(root: Path, out: Path, epochs: int, every: int) -> list[dict[str, str]]:
    args = [
        "--config",
        str(CONFIG),
        "--data.root",
        str(root),
        "--trainer.max_epochs",
        str(epochs),
        "--trainer.check_val_every_n_epoch",
        str(every),
        "--trainer.limit_train_batches",
        "2",
        "--trainer.default_root_dir",
        str(out),
        "--trainer.enable_progress_bar",
        "false",
        "--model.features",
        "[4, 8]",
        "--data.num_workers",
        "0",
    ]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert run_training_cli(args) == 0
    assert not [w for w in caught if "could not find the monitored key" in str(w.message)]
    (metrics,) = out.glob("lightning_logs/version_*/metrics.csv")
    with open(metrics) as f:
        return list(csv.DictReader(f))


def _validated_epochs(rows: list[dict[str, str]]) -> list[int]:
    return sorted({int(r["epoch"]) for r in rows if r.get("val/mean_dice")})


def test_an_odd_run_validates_its_last_epoch(tiny_malc: Path, tmp_path: Path) -> None:
    rows = _train(tiny_malc, tmp_path / "run", epochs=5, every=2)
    assert _validated_epochs(rows) == [1, 3, 4]
    (last,) = (tmp_path / "run").glob("lightning_logs/version_*/checkpoints/last.ckpt")
    state = torch.load(last, map_location="cpu", weights_only=True)
    assert state["global_step"] == 10  # 5 epochs of 2 steps: the final step


def test_every_epoch_and_even_runs_are_unchanged(tiny_malc: Path, tmp_path: Path) -> None:
    assert _validated_epochs(_train(tiny_malc, tmp_path / "a", epochs=4, every=2)) == [1, 3]
    assert _validated_epochs(_train(tiny_malc, tmp_path / "b", epochs=2, every=1)) == [0, 1]
