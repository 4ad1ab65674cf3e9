"""A cell's folder and its resume: every output under the cell folder whatever the YAML says,
and an interrupted training restarts from the explicit ``last.ckpt`` (proved by its log)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import torch
import yaml
from ablation_helpers import write_grid

from segattn.ablation.cell import prepare_cell, run_cell, with_run_dirs
from segattn.ablation.grid import load_grid


def test_outputs_forced_into_the_cell_folder(tmp_path: Path) -> None:
    config = {
        "trainer": {
            "default_root_dir": "runs/x",
            "logger": {
                "class_path": "lightning.pytorch.loggers.CSVLogger",
                "init_args": {"save_dir": "runs/x"},
            },
            "callbacks": [
                {"class_path": "lightning.pytorch.callbacks.LearningRateMonitor"},
                {
                    "class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                    "init_args": {"monitor": "val/mean_dice", "dirpath": "elsewhere"},
                },
            ],
        }
    }
    folder = tmp_path / "cell"
    forced = with_run_dirs(config, folder)
    trainer = forced["trainer"]
    assert trainer["default_root_dir"] == str(folder)
    assert trainer["logger"]["init_args"]["save_dir"] == str(folder)
    checkpoint = trainer["callbacks"][1]["init_args"]
    assert checkpoint["dirpath"] == str(folder / "checkpoints") and checkpoint["save_last"]
    assert config["trainer"]["logger"]["init_args"]["save_dir"] == "runs/x"  # not mutated
    # no logger and no checkpoint callback: both are added
    bare = with_run_dirs({}, folder)["trainer"]
    assert bare["logger"]["init_args"]["save_dir"] == str(folder)
    assert bare["callbacks"][0]["init_args"]["dirpath"] == str(folder / "checkpoints")


def _epochs_logged(folder: Path) -> set[int]:
    with folder.open() as fh:
        return {int(row["epoch"]) for row in csv.DictReader(fh) if row.get("epoch")}


def test_interrupted_training_resumes_from_last_ckpt(ablation_data: Path, tmp_path: Path) -> None:
    from segattn.training.cli import run_training_cli

    grid = write_grid(
        tmp_path / "grid.yaml",
        ablation_data,
        axes={"model.attention": ["cse"]},
        baseline={},
        metrics=["dice"],
    )
    spec = load_grid(grid)
    spec.overrides["trainer.max_epochs"] = 2
    cell = spec.cells()[0]
    folder = tmp_path / "cell"
    prepare_cell(spec, cell, folder)
    # the first attempt stops after epoch 0 (as if killed during epoch 1)
    config = str(folder / "train_config.yaml")
    assert run_training_cli(["--config", config, "--trainer.max_epochs", "1"]) == 0
    first = torch.load(folder / "checkpoints" / "last.ckpt", weights_only=True)
    assert (first["epoch"], first["global_step"]) == (0, 2)
    prepare_cell(spec, cell, folder)  # what the runner does before a rerun: keeps checkpoints
    result = run_cell(folder)
    assert (result["epochs"], result["steps"]) == (2, 4)
    assert result["resumed_from_step"] == 2 and result["steps_trained"] == 2
    logs = sorted(folder.glob("lightning_logs/version_*/metrics.csv"))
    assert len(logs) == 2
    assert _epochs_logged(logs[0]) == {0}
    # the resumed attempt trained epoch 1 only: it read last.ckpt (from scratch logs epoch 0)
    assert _epochs_logged(logs[1]) == {1}
    saved = yaml.safe_load((logs[1].parent / "config.yaml").read_text())
    assert saved["ckpt_path"] == str(folder / "checkpoints" / "last.ckpt")
    assert json.loads((folder / "result.json").read_text())["status"] == "done"
    assert (folder / "done").read_text().strip() == cell.digest
