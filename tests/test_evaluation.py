"""Dice tables against hand computations, including structures absent from both maps (NaN)."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from segattn.errors import InputFileError, SegattnError
from segattn.evaluation import evaluate_folders, read_label_names, read_missing_labels
from segattn.metrics import dice_per_label

LABELS = {"background": 0, "liver": 1, "spleen": 2, "tumour": 3}


def _save(path: Path, labels: np.ndarray, affine: np.ndarray | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(
        nib.Nifti1Image(labels.astype(np.uint8), np.eye(4) if affine is None else affine), path
    )


def _volume(*runs: tuple[int, int]) -> np.ndarray:
    """A 2x5x1 volume (10 voxels) filled with (label, count) runs, the rest background."""
    flat = np.zeros(10, np.uint8)
    i = 0
    for label, count in runs:
        flat[i : i + count] = label
        i += count
    return flat.reshape(2, 5, 1)


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path]:
    """Two cases with hand-checkable Dice.

    case a: liver pred 4 / ref 4, overlap 3 -> 6/8 = 0.75; spleen pred 2 / ref 0 -> 0;
            tumour absent from both -> nan.
    case b: liver pred 2 / ref 2, overlap 2 -> 1.0; spleen pred 0 / ref 3 -> 0;
            tumour pred 1 / ref 1 same voxel -> 1.0.
    """
    pred, ref = tmp_path / "pred", tmp_path / "Dataset" / "labelsTs"
    _save(pred / "a.nii.gz", _volume((0, 1), (1, 4), (2, 2)))
    _save(ref / "a.nii.gz", _volume((1, 4)))
    _save(pred / "b.nii", _volume((1, 2), (0, 3), (3, 1)))
    _save(ref / "b.nii.gz", _volume((1, 2), (2, 3), (3, 1)))
    (tmp_path / "Dataset" / "dataset.json").write_text(json.dumps({"labels": LABELS}))
    return pred, ref


def test_hand_computed_dice(folders: tuple[Path, Path]) -> None:
    result = evaluate_folders(*folders)  # labels from Dataset/dataset.json
    assert list(result.labels) == ["liver", "spleen", "tumour"]
    a, b = result.per_case["a"], result.per_case["b"]
    assert a["liver"] == pytest.approx(0.75) and a["spleen"] == 0.0 and math.isnan(a["tumour"])
    assert b == {"liver": 1.0, "spleen": 0.0, "tumour": 1.0}
    s = result.summary()
    assert (s["liver"].mean, s["liver"].std, s["liver"].n) == (pytest.approx(0.875), 0.125, 2)
    assert (s["tumour"].mean, s["tumour"].std, s["tumour"].n) == (1.0, 0.0, 1)  # NaN excluded
    assert result.mean_dice == pytest.approx((0.875 + 0.0 + 1.0) / 3)
    table = result.format_table()
    assert table.splitlines()[-1] == "mean Dice: 0.625"
    assert "0.875 ± 0.125" in table and "1/2" in table


def test_absent_everywhere_is_nan_and_excluded(folders: tuple[Path, Path]) -> None:
    labels = {**LABELS, "kidney": 4}
    result = evaluate_folders(*folders, labels=labels)
    assert result.summary()["kidney"].n == 0
    assert math.isnan(result.summary()["kidney"].mean)
    assert result.mean_dice == pytest.approx((0.875 + 0.0 + 1.0) / 3)
    assert "kidney" in result.format_table() and "nan (absent" in result.format_table()


def test_csv_rows(folders: tuple[Path, Path], tmp_path: Path) -> None:
    result = evaluate_folders(*folders)
    result.write_csv(tmp_path / "dice.csv")
    with (tmp_path / "dice.csv").open() as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["case", "label", "dice"]
    assert rows[1:4] == [
        ["a", "liver", "0.750000"],
        ["a", "spleen", "0.000000"],
        ["a", "tumour", "nan"],
    ]
    assert len(rows) == 1 + 2 * 3
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_without_dataset_json_values_are_names(folders: tuple[Path, Path]) -> None:
    pred, ref = folders
    (ref.parent / "dataset.json").unlink()
    result = evaluate_folders(pred, ref)
    assert list(result.labels) == ["1", "2", "3"]
    assert result.per_case["a"]["1"] == pytest.approx(0.75)
    assert math.isnan(result.per_case["a"]["3"])


def test_geometry_mismatch_names_case(folders: tuple[Path, Path]) -> None:
    pred, ref = folders
    shifted = np.eye(4)
    shifted[0, 3] = 0.5
    _save(pred / "b.nii", _volume((1, 2)), shifted)
    with pytest.raises(InputFileError, match="case b: affine differs"):
        evaluate_folders(pred, ref)
    _save(pred / "b.nii", np.zeros((2, 5, 2), np.uint8))
    with pytest.raises(InputFileError, match=r"case b: shape \(2, 5, 2\) differs"):
        evaluate_folders(pred, ref)


def test_missing_predictions(folders: tuple[Path, Path]) -> None:
    pred, ref = folders
    (pred / "b.nii").unlink()
    with pytest.raises(SegattnError, match="no prediction for 1 label case"):
        evaluate_folders(pred, ref)
    result = evaluate_folders(pred, ref, allow_missing=True)
    assert list(result.per_case) == ["a"] and result.missing == ["b"]


def test_values_outside_labels(folders: tuple[Path, Path]) -> None:
    pred, ref = folders
    _save(pred / "a.nii.gz", _volume((7, 1)))
    with pytest.raises(InputFileError, match=r"a.nii.gz: values \[7\] are not among"):
        evaluate_folders(pred, ref)


def test_read_label_names_forms(tmp_path: Path) -> None:
    path = tmp_path / "dataset.json"
    path.write_text(json.dumps({"labels": {"0": "background", "1": "liver"}}))  # MSD
    assert read_label_names(path) == {"background": 0, "liver": 1}
    path.write_text(json.dumps({"labels": {"background": 0, "organs": [1, 2]}}))
    with pytest.raises(InputFileError, match="region-based"):
        read_label_names(path)
    path.write_text("{not json")
    with pytest.raises(InputFileError, match="cannot read JSON"):
        read_label_names(path)


def test_dice_per_label_rejects_out_of_range() -> None:
    pred, target = torch.tensor([0, 1, 3]), torch.tensor([0, 1, 1])
    with pytest.raises(ValueError, match=r"pred has labels \[3\] outside 0..2"):
        dice_per_label(pred, target, 3)
    with pytest.raises(ValueError, match="target has labels"):
        dice_per_label(target, torch.tensor([0, -1, 1]), 3)
    dice = dice_per_label(torch.tensor([0, 1, 1, 2]), torch.tensor([0, 1, 2, 2]), 4)
    assert dice[:2].tolist() == pytest.approx([2 / 3, 2 / 3]) and math.isnan(dice[2])


def test_not_annotated_structures_score_nan(folders: tuple[Path, Path], tmp_path: Path) -> None:
    """dataset.json's missing_labels: NaN for that case whatever the prediction; said so."""
    pred, ref = folders
    meta = {"labels": LABELS, "missing_labels": {"a": ["spleen"], "b": ["spleen", "tumour"]}}
    (ref.parent / "dataset.json").write_text(json.dumps(meta))
    result = evaluate_folders(pred, ref)
    a, b = result.per_case["a"], result.per_case["b"]
    # case a predicts 2 spleen voxels the label lacks: a miss (0.0) without the record
    assert math.isnan(a["spleen"]) and a["liver"] == pytest.approx(0.75)
    assert math.isnan(b["spleen"]) and math.isnan(b["tumour"]) and b["liver"] == 1.0
    assert result.missing_labels == {"a": ["spleen"], "b": ["spleen", "tumour"]}
    s = result.summary()
    assert s["spleen"].n == 0 and s["tumour"].n == 0 and s["liver"].n == 2
    assert result.mean_dice == pytest.approx(0.875)
    rows = {line.split()[0]: line for line in result.format_table().splitlines()[1:-1]}
    assert "nan (not annotated)" in rows["spleen"] and "0/2 (2 not annotated)" in rows["spleen"]
    assert "nan (absent from predictions and labels)" in rows["tumour"]
    assert rows["tumour"].endswith("0/2 (1 not annotated)")
    result.write_csv(tmp_path / "dice.csv")
    with (tmp_path / "dice.csv").open() as fh:
        rows_csv = list(csv.reader(fh))
    assert rows_csv[0] == ["case", "label", "dice", "annotated"]
    assert rows_csv[1:4] == [
        ["a", "liver", "0.750000", "yes"],
        ["a", "spleen", "nan", "no"],
        ["a", "tumour", "nan", "yes"],
    ]
    # explicit arguments: labels given, missing labels given or not
    explicit = evaluate_folders(pred, ref, LABELS, missing_labels={"a": ["liver"]})
    assert math.isnan(explicit.per_case["a"]["liver"]) and explicit.per_case["a"]["spleen"] == 0.0
    assert evaluate_folders(pred, ref, LABELS).per_case["a"]["spleen"] == 0.0
    with pytest.raises(SegattnError, match=r"not labels: \['kidney'\]"):
        evaluate_folders(pred, ref, LABELS, missing_labels={"a": ["kidney"]})


def test_read_missing_labels(tmp_path: Path) -> None:
    path = tmp_path / "dataset.json"
    path.write_text(json.dumps({"labels": LABELS}))
    assert read_missing_labels(path) == {}
    path.write_text(json.dumps({"labels": LABELS, "missing_labels": {"c": ["liver"]}}))
    assert read_missing_labels(path) == {"c": ["liver"]}
    path.write_text(json.dumps({"labels": LABELS, "missing_labels": {"c": "liver"}}))
    with pytest.raises(InputFileError, match="must map case names to lists"):
        read_missing_labels(path)
    path.write_text(json.dumps({"labels": LABELS, "missing_labels": {"c": ["kidney"]}}))
    with pytest.raises(InputFileError, match=r"dataset.json: 'missing_labels' names .*kidney"):
        read_missing_labels(path)
