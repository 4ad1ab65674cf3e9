"""Tests for segattn.data.layout: nnU-Net v2 / MSD reading, label checks, errors, splits."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from segattn.data.layout import (
    Case,
    DatasetInfo,
    case_name_from_image,
    check_labels,
    load_dataset,
    split_cases,
    write_dataset_json,
)
from segattn.errors import InputFileError, SegattnError
from segattn.fileio import save_nifti_atomic

LABELS = {"background": 0, "edema": 1, "tumour": 2}


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def _nnunet(root: Path, cases=("b", "a", "c"), channels=("T1", "T2"), test=("t1",)) -> Path:
    """A dataset of empty files: layout only looks at names."""
    for case in cases:
        for c in range(len(channels)):
            _touch(root / "imagesTr" / f"{case}_{c:04d}.nii.gz")
        _touch(root / "labelsTr" / f"{case}.nii.gz")
    for case in test:
        for c in range(len(channels)):
            _touch(root / "imagesTs" / f"{case}_{c:04d}.nii.gz")
    write_dataset_json(root, dict(enumerate(channels)), LABELS, len(cases), name="toy")
    return root


def _rewrite_json(root: Path, **changes) -> None:
    meta = json.loads((root / "dataset.json").read_text())
    meta.update(changes)
    (root / "dataset.json").write_text(json.dumps(meta))


def test_load_nnunet_v2(tmp_path):
    info = load_dataset(_nnunet(tmp_path))
    assert info.layout == "nnunet" and info.name == "toy"
    assert [c.name for c in info.training] == ["a", "b", "c"]
    assert info.training[0].images == [
        tmp_path / "imagesTr" / "a_0000.nii.gz",
        tmp_path / "imagesTr" / "a_0001.nii.gz",
    ]
    assert info.training[0].label == tmp_path / "labelsTr" / "a.nii.gz"
    assert [(c.name, c.label) for c in info.test] == [("t1", None)]
    assert (info.num_classes, info.in_channels) == (3, 2)
    assert info.label_names == ["background", "edema", "tumour"]
    assert info.channel_names == {"0": "T1", "1": "T2"}
    assert not info.is_ct


def test_hidden_and_foreign_files_are_ignored(tmp_path):
    _nnunet(tmp_path)
    _touch(tmp_path / "imagesTr" / ".tmp-123-a_0000.nii.gz")
    _touch(tmp_path / "imagesTr" / "README.txt")
    assert len(load_dataset(tmp_path).training) == 3


def test_test_labels_are_found(tmp_path):
    _nnunet(tmp_path)
    _touch(tmp_path / "labelsTs" / "t1.nii.gz")
    assert load_dataset(tmp_path).test[0].label == tmp_path / "labelsTs" / "t1.nii.gz"


@pytest.mark.parametrize(
    ("name", "is_ct"),
    [("CT", True), ("ct", True), ("CTce_ThAb", True), ("noncontrast CT", True), ("T1", False),
     ("SPECT", False), ("MRT1_wb", False)],
)  # fmt: skip
def test_is_ct(name, is_ct):
    assert DatasetInfo("x", {"0": name}, LABELS).is_ct is is_ct


def test_labels_are_sorted_by_value():
    labels = check_labels({"b": 2, "background": 0, "a": 1})
    assert list(labels) == ["background", "a", "b"]


@pytest.mark.parametrize(
    ("labels", "match"),
    [
        ({"background": 0, "a": 2}, "0..K-1"),
        ({"a": 1, "b": 2}, "0..K-1"),
        ({"background": 0}, "K >= 2"),
        ({"background": 0, "a": 1, "b": 1}, "twice"),
        ({"background": 0, "whole": [1, 2], "core": 2}, "region-based"),
        ({"background": 0, "a": 1, "ignore": 2}, "ignore"),
        ({"background": 0, "a": "1"}, "integer"),
        ({"background": 0, "a": True}, "integer"),
    ],
)
def test_bad_labels(tmp_path, labels, match):
    with pytest.raises(SegattnError, match=match):
        check_labels(labels)
    _nnunet(tmp_path)
    _rewrite_json(tmp_path, labels=labels)
    with pytest.raises(InputFileError, match=match) as err:
        load_dataset(tmp_path)
    assert err.value.path == tmp_path / "dataset.json"


def test_load_msd_with_4d_images(tmp_path):
    for case in ("BRATS_002", "BRATS_001"):
        _touch(tmp_path / "imagesTr" / f"{case}.nii.gz")
        _touch(tmp_path / "labelsTr" / f"{case}.nii.gz")
    _touch(tmp_path / "imagesTs" / "BRATS_900.nii.gz")
    meta = {
        "name": "BRATS",
        "modality": {"0": "FLAIR", "1": "T1w"},
        "labels": {"0": "background", "2": "tumour", "1": "edema"},
        "numTraining": 2,
        "training": [
            {"image": f"./imagesTr/{c}.nii.gz", "label": f"./labelsTr/{c}.nii.gz"}
            for c in ("BRATS_002", "BRATS_001")
        ],
        "test": ["./imagesTs/BRATS_900.nii.gz"],
    }
    (tmp_path / "dataset.json").write_text(json.dumps(meta))
    info = load_dataset(tmp_path)
    assert info.layout == "msd" and info.file_ending == ".nii.gz"
    assert [c.name for c in info.training] == ["BRATS_001", "BRATS_002"]
    assert info.training[0].images == [tmp_path / "imagesTr" / "BRATS_001.nii.gz"]
    assert info.labels == {"background": 0, "edema": 1, "tumour": 2}
    assert (info.in_channels, info.num_classes) == (2, 3)
    assert [(c.name, c.label) for c in info.test] == [("BRATS_900", None)]


def test_load_msd_json_with_per_channel_files(tmp_path):
    """nnU-Net v1: dataset.json lists x.nii.gz, the files are x_0000.nii.gz, x_0001.nii.gz."""
    for c in range(2):
        _touch(tmp_path / "imagesTr" / f"la_003_{c:04d}.nii.gz")
    _touch(tmp_path / "labelsTr" / "la_003.nii.gz")
    meta = {
        "modality": {"0": "MRI", "1": "ADC"},
        "labels": {"0": "background", "1": "left atrium"},
        "training": [{"image": "./imagesTr/la_003.nii.gz", "label": "./labelsTr/la_003.nii.gz"}],
    }
    (tmp_path / "dataset.json").write_text(json.dumps(meta))
    case = load_dataset(tmp_path).training[0]
    assert case.name == "la_003"
    assert [p.name for p in case.images] == ["la_003_0000.nii.gz", "la_003_0001.nii.gz"]


def test_msd_missing_files_are_named(tmp_path):
    _touch(tmp_path / "imagesTr" / "x.nii.gz")
    meta = {
        "modality": {"0": "CT"},
        "labels": {"0": "background", "1": "liver"},
        "training": [{"image": "./imagesTr/x.nii.gz", "label": "./labelsTr/x.nii.gz"}],
    }
    (tmp_path / "dataset.json").write_text(json.dumps(meta))
    with pytest.raises(InputFileError, match="missing label") as err:
        load_dataset(tmp_path)
    assert err.value.path == tmp_path / "labelsTr" / "x.nii.gz"


def test_missing_root(tmp_path):
    with pytest.raises(InputFileError, match="not found") as err:
        load_dataset(tmp_path / "nope")
    assert str(tmp_path / "nope") in str(err.value)


def test_missing_dataset_json(tmp_path):
    with pytest.raises(InputFileError, match="dataset.json") as err:
        load_dataset(tmp_path)
    assert err.value.path == tmp_path / "dataset.json"


def test_invalid_json(tmp_path):
    _nnunet(tmp_path)
    (tmp_path / "dataset.json").write_text('{"labels": {')
    with pytest.raises(InputFileError, match="invalid JSON") as err:
        load_dataset(tmp_path)
    assert str(err.value).startswith(str(tmp_path / "dataset.json"))


@pytest.mark.parametrize("key", ["labels", "channel_names"])
def test_missing_keys(tmp_path, key):
    _nnunet(tmp_path)
    meta = json.loads((tmp_path / "dataset.json").read_text())
    del meta[key]
    (tmp_path / "dataset.json").write_text(json.dumps(meta))
    with pytest.raises(InputFileError, match=key):
        load_dataset(tmp_path)


def test_missing_channel_file(tmp_path):
    _nnunet(tmp_path)
    missing = tmp_path / "imagesTr" / "b_0001.nii.gz"
    missing.unlink()
    with pytest.raises(InputFileError, match=r"channel 1 \(T2\) of case b") as err:
        load_dataset(tmp_path)
    assert err.value.path == missing


def test_image_without_label(tmp_path):
    _nnunet(tmp_path)
    (tmp_path / "labelsTr" / "c.nii.gz").unlink()
    with pytest.raises(InputFileError, match="missing label of training case c") as err:
        load_dataset(tmp_path)
    assert err.value.path == tmp_path / "labelsTr" / "c.nii.gz"


def test_label_without_image(tmp_path):
    _nnunet(tmp_path)
    _touch(tmp_path / "labelsTr" / "d.nii.gz")
    with pytest.raises(InputFileError, match="channel 0") as err:
        load_dataset(tmp_path)
    assert err.value.path == tmp_path / "imagesTr" / "d_0000.nii.gz"


def test_image_without_channel_suffix(tmp_path):
    _nnunet(tmp_path)
    _touch(tmp_path / "imagesTr" / "plain.nii.gz")
    with pytest.raises(InputFileError, match="channel suffix"):
        load_dataset(tmp_path)


def test_empty_dataset(tmp_path):
    _nnunet(tmp_path, cases=())
    with pytest.raises(InputFileError, match="missing folder"):
        load_dataset(tmp_path)
    (tmp_path / "imagesTr").mkdir()
    with pytest.raises(InputFileError, match="no training cases"):
        load_dataset(tmp_path)


def test_num_training_mismatch(tmp_path):
    _nnunet(tmp_path)
    _rewrite_json(tmp_path, numTraining=5)
    with pytest.raises(InputFileError, match="numTraining=5"):
        load_dataset(tmp_path)


def test_write_dataset_json(tmp_path):
    path = write_dataset_json(tmp_path / "new", {0: "CT"}, {"liver": 1, "background": 0}, 7,
                              description="d")  # fmt: skip
    text = path.read_text()
    assert text.startswith("{\n  ") and text.endswith("}\n")
    meta = json.loads(text)
    assert meta == {
        "channel_names": {"0": "CT"},
        "labels": {"background": 0, "liver": 1},
        "numTraining": 7,
        "file_ending": ".nii.gz",
        "description": "d",
    }
    assert sorted(p.name for p in path.parent.iterdir()) == ["dataset.json"]
    with pytest.raises(SegattnError):
        write_dataset_json(tmp_path, {0: "CT"}, {"background": 0, "liver": 3}, 1)


@pytest.mark.parametrize(
    ("path", "ending", "name"),
    [
        ("imagesTs/brain_0000.nii.gz", ".nii.gz", "brain"),
        ("brain_0003.nii", ".nii.gz", "brain"),
        ("/x/1000_3.nii.gz", ".nii.gz", "1000_3"),
        ("malc_000_0000.nii.gz", ".nii.gz", "malc_000"),
        ("case.mha", ".mha", "case"),
        ("scan_12345.nii.gz", ".nii.gz", "scan_12345"),
    ],
)
def test_case_name_from_image(path, ending, name):
    assert case_name_from_image(path, ending) == name


def test_save_nifti_atomic(tmp_path):
    path = tmp_path / "x.nii.gz"
    save_nifti_atomic(nib.Nifti1Image(np.ones((2, 3, 4), np.uint8), np.eye(4)), path)
    assert nib.load(path).shape == (2, 3, 4)
    assert [p.name for p in tmp_path.iterdir()] == ["x.nii.gz"]


def _cases(n: int) -> list[Case]:
    return [Case(f"case_{i:02d}", [Path(f"case_{i:02d}_0000.nii.gz")], None) for i in range(n)]


@pytest.mark.parametrize(("n", "n_val"), [(1, 0), (2, 1), (3, 1), (10, 2), (14, 3)])
def test_split_sizes(n, n_val):
    train, val = split_cases(_cases(n))
    assert len(val) == n_val and len(train) == n - n_val
    assert sorted(c.name for c in train + val) == [c.name for c in _cases(n)]


def test_split_is_deterministic_and_order_independent():
    cases = _cases(20)
    first = split_cases(cases, seed=3)
    assert split_cases(list(reversed(cases)), seed=3) == first
    assert [c.name for c in first[1]] == sorted(c.name for c in first[1])
    other_seeds = [split_cases(cases, seed=s)[1] for s in range(4, 8)]
    assert any(val != first[1] for val in other_seeds)


def test_split_zero_and_bad_fraction():
    assert split_cases(_cases(5), val_fraction=0.0)[1] == []
    with pytest.raises(ValueError, match="val_fraction"):
        split_cases(_cases(5), val_fraction=1.0)


def test_splits_file(tmp_path):
    splits = tmp_path / "splits_final.json"
    splits.write_text(json.dumps([
        {"train": ["case_00", "case_01", "case_02"], "val": ["case_03"]},
        {"train": ["case_03", "case_01"], "val": ["case_00", "case_02"]},
    ]))  # fmt: skip
    train, val = split_cases(_cases(5), splits_file=splits, fold=1)
    assert [c.name for c in train] == ["case_01", "case_03"]
    assert [c.name for c in val] == ["case_00", "case_02"]
    with pytest.raises(InputFileError, match="not fold 2"):
        split_cases(_cases(5), splits_file=splits, fold=2)
    with pytest.raises(InputFileError, match="case_03"):
        split_cases(_cases(3), splits_file=splits, fold=0)


def test_bad_splits_file(tmp_path):
    splits = tmp_path / "splits_final.json"
    splits.write_text(json.dumps({"train": []}))
    with pytest.raises(InputFileError, match="list of"):
        split_cases(_cases(3), splits_file=splits)
    with pytest.raises(InputFileError, match="not found"):
        split_cases(_cases(3), splits_file=tmp_path / "missing.json")
