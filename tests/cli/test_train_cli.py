from __future__ import annotations

from pathlib import Path

import torch
import yaml

from segattn.cli.main import main

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def _train(config: str, root: Path, out: Path, *extra: str) -> int:
    return main(
        [
            "train",
            "--config",
            str(CONFIGS / config),
            "--data.root",
            str(root),
            "--trainer.max_epochs",
            "1",
            "--trainer.limit_train_batches",
            "2",
            "--trainer.enable_progress_bar",
            "false",
            "--trainer.default_root_dir",
            str(out),
            "--trainer.logger.init_args.save_dir",
            str(out),
            "--model.features",
            "[4, 8]",
            *extra,
        ]
    )


def test_train_2d_config_on_any_dataset(tiny_malc: Path, tmp_path: Path) -> None:
    assert _train("unet2d_scse.yaml", tiny_malc, tmp_path, "--model.attention", "cse") == 0
    configs = list(tmp_path.rglob("config.yaml"))
    assert configs, "each run saves its config"
    saved = yaml.safe_load(configs[0].read_text())
    assert saved["model"]["attention"] == "cse"
    ckpts = sorted(tmp_path.rglob("*.ckpt"))
    assert any(p.name == "last.ckpt" for p in ckpts)
    assert any(p.name.startswith("best") for p in ckpts)
    best = next(p for p in ckpts if p.name.startswith("best"))
    meta = torch.load(best, map_location="cpu", weights_only=True)["segattn"]
    assert meta["net"]["kwargs"]["attention"] == "cse"
    assert meta["net"]["kwargs"]["num_classes"] == len(meta["labels"])
    assert meta["slice_axis"] == 1
    metrics = list(tmp_path.rglob("metrics.csv"))
    assert metrics and "val/mean_dice" in metrics[0].read_text().splitlines()[0]
    # the checkpoint LightningCLI wrote is all `segattn predict` needs
    preds = tmp_path / "preds"
    assert (
        main(
            [
                "predict",
                "--model",
                str(best),
                "--input",
                str(tiny_malc / "imagesTs"),
                "--output",
                str(preds),
                "--no-progress",
            ]
        )
        == 0
    )
    assert sorted(p.name for p in preds.iterdir()) == [
        "labels.ctbl",
        "labels.itksnap.txt",
        "malc_005.nii.gz",
    ]
    csv = tmp_path / "dice.csv"
    assert (
        main(
            [
                "evaluate",
                "--pred",
                str(preds),
                "--labels",
                str(tiny_malc / "labelsTs"),
                "--csv",
                str(csv),
            ]
        )
        == 0
    )
    assert csv.read_text().splitlines()[0] == "case,label,dice"


def test_train_3d_config(tiny_malc: Path, tmp_path: Path) -> None:
    code = _train(
        "unet3d_scse.yaml",
        tiny_malc,
        tmp_path,
        "--data.patch_size",
        "[16, 16, 16]",
        "--data.intensity",
        '{"kind": "zscore", "nonzero": true}',
    )
    assert code == 0
    best = next(p for p in tmp_path.rglob("best*.ckpt"))
    meta = torch.load(best, map_location="cpu", weights_only=True)["segattn"]
    assert meta["mode"] == "3d" and meta["patch_size"] == [16, 16, 16]
    assert meta["preprocessing"]["intensity"] == {"kind": "zscore", "nonzero": True}


def test_train_missing_dataset_is_one_line(tmp_path: Path, capsys) -> None:
    code = _train("unet2d_scse.yaml", tmp_path / "nope", tmp_path)
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0
    assert len(err) == 1 and "nope" in err[0] and "Traceback" not in err[0]
