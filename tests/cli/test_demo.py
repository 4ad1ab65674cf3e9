from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import torch

from segattn.cli.main import main


def test_demo_end_to_end_tiny(tmp_path: Path, capsys) -> None:
    out = tmp_path / "demo"
    tiny = ["--cases", "5", "--test-cases", "1", "--size", "32", "--epochs", "1"]
    code = main(["demo", "--out", str(out), *tiny, "--no-progress"])
    assert code == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1].startswith("mean Dice: ")
    assert 0.0 <= float(lines[-1].split(":")[1]) <= 1.0
    assert (out / "model.ckpt").is_file()
    assert (out / "overlay.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    preds = sorted((out / "predictions").glob("*.nii.gz"))
    assert [p.name for p in preds] == ["malc_004.nii.gz"]
    src = nib.load(str(out / "data" / "imagesTs" / "malc_004_0000.nii.gz"))
    pred = nib.load(str(preds[0]))
    assert pred.shape == src.shape and np.allclose(pred.affine, src.affine)
    assert np.issubdtype(pred.get_data_dtype(), np.integer)
    meta = torch.load(out / "model.ckpt", map_location="cpu", weights_only=True)["segattn"]
    assert meta["net"]["kwargs"]["attention"] == "scse" and meta["slice_axis"] == 1
    # a second run reuses the generated data and overwrites its own outputs
    assert main(["demo", "--out", str(out), *tiny, "--no-progress"]) == 0


def test_demo_rejects_too_few_cases(tmp_path: Path, capsys) -> None:
    code = main(["demo", "--out", str(tmp_path), "--cases", "2", "--test-cases", "1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--cases" in err[0]


def test_demo_trains_another_network_with_the_papers_loss(tmp_path: Path, capsys) -> None:
    out = tmp_path / "qn"
    args = ["demo", "--out", str(out), "--cases", "4", "--test-cases", "1", "--size", "32"]
    args += ["--epochs", "1", "--no-progress", "--net", "quicknat"]
    args += ["--net-kwargs", '{"features": 4, "depth": 2}', "--loss", "weighted_ce_dice"]
    args += ["--lr", "0.003"]
    assert main(args) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("mean Dice: ")
    ckpt = torch.load(out / "model.ckpt", map_location="cpu", weights_only=True)
    meta = ckpt["segattn"]
    assert meta["net"]["name"] == "quicknat"
    assert meta["net"]["kwargs"]["features"] == 4 and meta["net"]["kwargs"]["depth"] == 2
    assert ckpt["hyper_parameters"]["loss"] == "weighted_ce_dice"
    assert ckpt["optimizer_states"][0]["param_groups"][0]["initial_lr"] == 0.003
