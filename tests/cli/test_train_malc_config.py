"""configs/malc_unet2d_scse.yaml trains, given only --data.root, on a prepared MALC dataset."""

from __future__ import annotations

from pathlib import Path

import torch
import yaml

from segattn.cli.main import main
from segattn.data.malc import QUICKNAT_LABELS, prepare_malc
from segattn.data.phantoms import make_malc_dataset

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "malc_unet2d_scse.yaml"


def test_config_parses_as_documented() -> None:
    config = yaml.safe_load(CONFIG.read_text())
    assert config["data"]["mode"] == "2d" and config["data"]["slice_axis"] == "coronal"
    assert config["model"]["attention"] == "scse"
    assert "root" not in config["data"] and "num_classes" not in config["model"]


def test_trains_on_a_prepared_native_phantom(tmp_path: Path) -> None:
    raw = make_malc_dataset(tmp_path / "raw", cases=4, size=24, layout="native").root
    root = tmp_path / "Dataset001_MALC"
    assert not prepare_malc(raw, root).failed
    out = tmp_path / "runs"
    code = main(
        [
            "train",
            "--config",
            str(CONFIG),
            "--data.root",
            str(root),
            # tiny and fast: two steps of two slices, a two-level net
            "--trainer.max_epochs",
            "1",
            "--trainer.limit_train_batches",
            "2",  # an int: "1" would parse as the fraction 1.0, a whole epoch
            "--trainer.enable_progress_bar",
            "false",
            "--trainer.default_root_dir",
            str(out),
            "--trainer.logger.init_args.save_dir",
            str(out),
            "--data.batch_size",
            "2",
            "--model.features",
            "[4, 8]",
        ]
    )
    assert code == 0
    best = next(out.rglob("best*.ckpt"))
    meta = torch.load(best, map_location="cpu", weights_only=True)["segattn"]
    assert meta["labels"] == QUICKNAT_LABELS
    assert meta["net"]["kwargs"]["num_classes"] == 33
    assert meta["net"]["kwargs"]["attention"] == "scse"
    assert meta["slice_axis"] == 1 and meta["mode"] == "2d"
