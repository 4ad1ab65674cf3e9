"""Command line, every network: ``segattn train`` with the MALC configs at tiny widths, then
``segattn predict`` with the checkpoint it wrote and ``segattn evaluate`` on the predictions."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from segattn.cli.main import main
from segattn.nets import available

CONFIGS = Path(__file__).resolve().parents[2] / "configs"

# (config, network options small enough for a test); the U-Net runs from the QuickNAT config
# with the network switched on the command line
RUNS = {
    "unet": ("malc_quicknat_scse.yaml", {"features": [4, 8]}),
    "sdnet": ("malc_sdnet_scse.yaml", {"features": 8, "kernel_size": 3, "depth": 2}),
    "quicknat": ("malc_quicknat_scse.yaml", {"features": 8, "kernel_size": 3, "depth": 2}),
    "fcdensenet": (
        "malc_fcdensenet_scse.yaml",
        {"growth_rate": 4, "down_layers": [1, 1], "bottleneck_layers": 1, "stem_features": 8},
    ),
}


def test_every_network_has_a_run() -> None:
    assert sorted(RUNS) == available()


@pytest.mark.parametrize("net", sorted(RUNS))
def test_train_predict_evaluate(net: str, tiny_malc: Path, tmp_path: Path) -> None:
    config, options = RUNS[net]
    args = [
        "train",
        "--config",
        str(CONFIGS / config),
        "--data.root",
        str(tiny_malc),
        "--data.batch_size",
        "2",
        "--trainer.max_epochs",
        "1",
        "--trainer.limit_train_batches",
        "2",  # an int: "1" would parse as the fraction 1.0, a whole epoch
        "--trainer.enable_progress_bar",
        "false",
        "--trainer.default_root_dir",
        str(tmp_path),
        "--trainer.logger.init_args.save_dir",
        str(tmp_path),
        "--model.net",
        net,
        "--model.net_kwargs",
        json.dumps(options),
    ]
    assert main(args) == 0
    best = next(p for p in tmp_path.rglob("*.ckpt") if p.name.startswith("best"))
    meta = torch.load(best, map_location="cpu", weights_only=True)["segattn"]
    assert meta["net"]["name"] == net
    assert meta["net"]["kwargs"]["attention"] == "scse"
    for key, value in options.items():
        assert meta["net"]["kwargs"][key] == value
    preds = tmp_path / "preds"
    predict = ["predict", "--model", str(best), "--input", str(tiny_malc / "imagesTs")]
    assert main([*predict, "--output", str(preds), "--no-progress"]) == 0
    assert sorted(p.name for p in preds.iterdir()) == [
        "labels.ctbl",
        "labels.itksnap.txt",
        "malc_005.nii.gz",
    ]
    table = tmp_path / "dice.csv"
    evaluate = ["evaluate", "--pred", str(preds), "--labels", str(tiny_malc / "labelsTs")]
    assert main([*evaluate, "--csv", str(table)]) == 0
    rows = list(csv.DictReader(table.open()))
    assert rows and {r["case"] for r in rows} == {"malc_005"}
    assert len({r["label"] for r in rows}) == len(meta["labels"]) - 1
