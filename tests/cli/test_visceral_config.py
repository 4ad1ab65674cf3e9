"""configs/visceral_unet3d_scse.yaml: parses, trains on a prepared VISCERAL-like phantom with the
fitted CT normalisation and resampling stored in the checkpoint, and predicts back onto the scans'
own grids."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
import yaml

from segattn.cli.main import main
from segattn.data.phantoms import make_visceral_dataset
from segattn.data.visceral import convert_visceral

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "visceral_unet3d_scse.yaml"


def test_config_values() -> None:
    config = yaml.safe_load(CONFIG.read_text())
    data = config["data"]
    assert data["mode"] == "3d" and data["spacing"] == [4.0, 4.0, 4.0]
    assert data["intensity"] == {"kind": "ct_fitted"}
    assert data["sampling"] == "classes"
    assert data["augmentation"]["flip_axes"] == []
    assert config["model"]["attention"] == "scse"


def test_tiny_fit_predict_evaluate(tmp_path: Path, capsys) -> None:
    native, root = tmp_path / "native", tmp_path / "prepared"
    make_visceral_dataset(native, 4, size=32, seed=1, layout="native")
    convert_visceral(native, root)
    out = tmp_path / "run"
    code = main(
        [
            "train",
            "--config",
            str(CONFIG),
            "--data.root",
            str(root),
            "--data.spacing",
            "[24.0, 24.0, 24.0]",  # coarse, to stay fast: ~14 mm pixels, ~40 mm slices
            "--data.patch_size",
            "[16, 16, 16]",
            "--model.features",
            "[4, 8]",
            "--trainer.max_epochs",
            "1",
            "--trainer.check_val_every_n_epoch",
            "1",
            "--trainer.limit_train_batches",
            "2",
            "--trainer.enable_progress_bar",
            "false",
            "--trainer.default_root_dir",
            str(out),
            "--trainer.logger.init_args.save_dir",
            str(out),
        ]
    )
    assert code == 0
    best = next(out.rglob("best*.ckpt"))
    meta = torch.load(best, map_location="cpu", weights_only=True)["segattn"]
    preprocessing = meta["preprocessing"]
    assert preprocessing["orientation"] == "RAS" and preprocessing["spacing"] == [24.0] * 3
    intensity = preprocessing["intensity"]
    assert intensity["kind"] == "ct_fitted" and intensity["percentiles"] == [0.5, 99.5]
    lo, hi = intensity["clip"]
    assert -1024 <= lo < intensity["mean"] < hi <= 3071 and intensity["std"] > 0  # HU
    assert (
        meta["mode"] == "3d" and len(meta["labels"]) == 21 and meta["channel_names"] == {"0": "CT"}
    )
    assert "val/mean_dice" in next(out.rglob("metrics.csv")).read_text().splitlines()[0]

    # predictions come back on each scan's anisotropic, non-RAS grid
    preds = tmp_path / "preds"
    images = root / "imagesTr"
    assert main(["predict", "--model", str(best), "--input", str(images), "--output", str(preds),
                 "--no-progress"]) == 0  # fmt: skip
    for image in sorted(images.iterdir()):
        source = nib.load(image)
        pred = nib.load(preds / image.name.replace("_0000", ""))
        assert pred.shape == source.shape
        np.testing.assert_allclose(pred.affine, source.affine, atol=1e-4)
        assert np.linalg.norm(source.affine[:3, :3], axis=0)[2] > 20.0  # thick slices
    capsys.readouterr()
    missing = json.loads((root / "dataset.json").read_text())["missing_labels"]
    assert missing  # seed 1 leaves some organ unannotated
    csv = tmp_path / "dice.csv"
    labels = str(root / "labelsTr")
    assert main(["evaluate", "--pred", str(preds), "--labels", labels, "--csv", str(csv)]) == 0
    rows = csv.read_text().splitlines()
    assert rows[0] == "case,label,dice,annotated"
    case, names = next(iter(missing.items()))
    assert all(f"{case},{name},nan,no" in rows for name in names)
