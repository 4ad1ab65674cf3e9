"""File naming, input grouping, label-map headers and atomic writes."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from inference_helpers import oblique_affine, save_image

from segattn.errors import InputFileError
from segattn.inference import collect_cases
from segattn.inference.io import (
    label_dtype,
    label_image,
    load_nifti_header,
    output_name,
)


@pytest.mark.parametrize(
    "name, expected",
    [
        ("CASE_0000.nii.gz", "CASE.nii.gz"),
        ("dir/CASE_0000.nii", "CASE.nii"),
        ("scan.nii.gz", "scan.nii.gz"),
        ("CASE_0001.nii.gz", "CASE_0001.nii.gz"),
        ("la_003_0000.nii.gz", "la_003.nii.gz"),
    ],
)
def test_output_name(name: str, expected: str) -> None:
    assert output_name(name) == expected


def _touch_images(folder: Path, names: list[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for n in names:
        save_image(folder / n, np.zeros((2, 2, 2), np.float32))


def test_collect_cases_groups_channel_files(tmp_path: Path) -> None:
    _touch_images(tmp_path / "in", ["A_0000.nii.gz", "A_0001.nii.gz", "B.nii.gz", "C_0001.nii"])
    (tmp_path / "in" / "notes.txt").write_text("ignored")
    cases, errors = collect_cases([tmp_path / "in"], in_channels=2)
    assert [(c.name, c.output_name, len(c.images)) for c in cases] == [
        ("A", "A.nii.gz", 2),
        ("B", "B.nii.gz", 1),
        ("C_0001", "C_0001.nii", 1),
    ]
    assert not errors


def test_collect_cases_problems(tmp_path: Path) -> None:
    _touch_images(tmp_path / "a", ["X_0000.nii.gz", "X_0001.nii.gz"])
    _touch_images(tmp_path / "b", ["Y_0000.nii.gz", "Y_0002.nii.gz", "Z_0000.nii.gz"])
    _touch_images(tmp_path / "c", ["Z.nii.gz"])
    (tmp_path / "empty").mkdir()
    cases, errors = collect_cases(
        [tmp_path / "a", tmp_path / "missing", tmp_path / "empty", tmp_path / "b", tmp_path / "c"],
        in_channels=1,
    )
    messages = "\n".join(e.error for e in errors)
    assert "missing: no such file or folder" in messages
    assert "empty: folder contains no image files (.nii.gz, .nii, .nrrd" in messages
    assert "X_0000.nii.gz: looks like nnU-Net channel files" in messages
    assert "Y_0000.nii.gz: looks like nnU-Net channel files" in messages
    # b/Z_0000.nii.gz and c/Z.nii.gz would both write Z.nii.gz
    assert messages.count("output name Z.nii.gz") == 2
    assert cases == []
    _, errors = collect_cases([tmp_path / "b"], in_channels=3)
    assert "takes 3 channels (_0000.._0002) but found channel files _0000, _0002" in errors[0].error


def test_same_file_twice_is_one_case(tmp_path: Path) -> None:
    _touch_images(tmp_path, ["A.nii.gz"])
    cases, errors = collect_cases([tmp_path, tmp_path / "A.nii.gz"], in_channels=1)
    assert len(cases) == 1 and not errors


def test_label_image_keeps_geometry_and_codes(tmp_path: Path) -> None:
    src = save_image(
        tmp_path / "src.nii", np.zeros((4, 5, 6, 2), np.float32), oblique_affine(), 2, 0
    )
    ref = nib.load(src)
    img = label_image(np.ones((4, 5, 6), np.int64), ref, num_classes=3)
    nib.save(img, tmp_path / "out.nii")
    out = nib.load(tmp_path / "out.nii")
    assert out.shape == (4, 5, 6)
    assert (int(out.header["qform_code"]), int(out.header["sform_code"])) == (2, 0)
    np.testing.assert_allclose(out.affine, ref.affine, atol=1e-6)
    with pytest.raises(ValueError, match="reference grid"):
        label_image(np.ones((4, 5, 7)), ref, 3)


def test_label_dtype() -> None:
    assert label_dtype(2) is np.uint8 and label_dtype(256) is np.uint8
    assert label_dtype(257) is np.int16


@pytest.mark.parametrize(
    "content, problem",
    [(b"", "cannot read as NIfTI"), (b"plain text, not an image" * 30, "cannot read as NIfTI")],
)
def test_load_nifti_header_rejects_non_nifti(tmp_path: Path, content: bytes, problem: str) -> None:
    path = tmp_path / "x.nii"
    path.write_bytes(content)
    with pytest.raises(InputFileError, match=problem):
        load_nifti_header(path)
    (tmp_path / "y.txt").write_text("x")
    with pytest.raises(InputFileError, match="not an image file name"):
        load_nifti_header(tmp_path / "y.txt")
