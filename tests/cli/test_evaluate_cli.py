"""``segattn evaluate`` through its entry function."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from segattn.cli.main import main


def _save(path: Path, labels: np.ndarray, affine: np.ndarray | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(
        nib.Nifti1Image(labels.astype(np.uint8), np.eye(4) if affine is None else affine), path
    )


@pytest.fixture
def data(tmp_path: Path) -> tuple[Path, Path]:
    pred, ref = tmp_path / "pred", tmp_path / "ds" / "labelsTs"
    truth = np.zeros((4, 4, 2), np.uint8)
    truth[:2] = 1  # 16 voxels of label 1
    guess = np.zeros_like(truth)
    guess[:1] = 1  # 8 voxels, all inside: Dice 16/24
    _save(ref / "c1.nii.gz", truth)
    _save(pred / "c1.nii.gz", guess)
    _save(ref / "c2.nii.gz", truth)
    _save(pred / "c2.nii.gz", truth)  # Dice 1
    (tmp_path / "ds" / "dataset.json").write_text(
        json.dumps({"labels": {"background": 0, "cortex": 1, "absent": 2}})
    )
    return pred, ref


def test_table_and_csv(data: tuple[Path, Path], tmp_path: Path, capsys) -> None:
    pred, ref = data
    out_csv = tmp_path / "dice.csv"
    assert main(["evaluate", "--pred", str(pred), "--labels", str(ref), "--csv", str(out_csv)]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    mean = (2 / 3 + 1) / 2
    assert out[-1] == f"mean Dice: {mean:.3f}"
    assert any(line.startswith("cortex") and "2/2" in line for line in out)
    assert any(line.startswith("absent") and "nan" in line and "0/2" in line for line in out)
    rows = out_csv.read_text().splitlines()
    assert rows == [
        "case,label,dice",
        "c1,cortex,0.666667",
        "c1,absent,nan",
        "c2,cortex,1.000000",
        "c2,absent,nan",
    ]


def test_explicit_dataset_json(data: tuple[Path, Path], tmp_path: Path, capsys) -> None:
    pred, ref = data
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"labels": {"0": "background", "1": "brain"}}))
    args = ["evaluate", "--pred", str(pred), "--labels", str(ref), "--dataset-json", str(other)]
    assert main(args) == 0
    assert "brain" in capsys.readouterr().out


def test_geometry_mismatch_exit_2(data: tuple[Path, Path], capsys) -> None:
    pred, ref = data
    _save(pred / "c2.nii.gz", np.zeros((4, 4, 3)))
    assert main(["evaluate", "--pred", str(pred), "--labels", str(ref)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "case c2: shape" in err[0] and "Traceback" not in err[0]


def test_missing_prediction_exit_2_or_skipped(data: tuple[Path, Path], capsys) -> None:
    pred, ref = data
    (pred / "c2.nii.gz").unlink()
    assert main(["evaluate", "--pred", str(pred), "--labels", str(ref)]) == 2
    assert "no prediction for 1 label case(s): c2" in capsys.readouterr().err
    assert main(["evaluate", "--pred", str(pred), "--labels", str(ref), "--allow-missing"]) == 0
    out = capsys.readouterr().out
    assert "skipped 1 case(s)" in out and "mean Dice: 0.667" in out


def test_missing_folder_exit_2(tmp_path: Path, capsys) -> None:
    assert main(["evaluate", "--pred", str(tmp_path / "p"), "--labels", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith(f"segattn: error: {tmp_path / 'p'}: no such folder")


def test_not_annotated_from_dataset_json(data: tuple[Path, Path], tmp_path: Path, capsys) -> None:
    pred, ref = data
    meta = {
        "labels": {"background": 0, "cortex": 1, "absent": 2},
        "missing_labels": {"c1": ["cortex"]},
    }
    other = tmp_path / "meta.json"
    other.write_text(json.dumps(meta))
    out_csv = tmp_path / "dice.csv"
    args = ["evaluate", "--pred", str(pred), "--labels", str(ref), "--dataset-json", str(other)]
    assert main([*args, "--csv", str(out_csv)]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1] == "mean Dice: 1.000"  # c1's 0.667 is not scored: cortex not annotated there
    assert any(line.startswith("cortex") and "1/2 (1 not annotated)" in line for line in out)
    assert out_csv.read_text().splitlines()[:3] == [
        "case,label,dice,annotated",
        "c1,cortex,nan,no",
        "c1,absent,nan,yes",
    ]
    (tmp_path / "ds" / "dataset.json").write_text(json.dumps(meta))  # found beside --labels too
    assert main(["evaluate", "--pred", str(pred), "--labels", str(ref)]) == 0
    assert "mean Dice: 1.000" in capsys.readouterr().out
