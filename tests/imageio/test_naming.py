"""Scan names, output names and folder listing for every format."""

from __future__ import annotations

from pathlib import Path

import pytest
from dicom_helpers import write_report

from segattn.errors import InputFileError
from segattn.imageio import case_name, discover_inputs, file_format, list_scans, output_name


@pytest.mark.parametrize(
    "name, fmt, same, nifti",
    [
        ("CASE_0000.nii.gz", "nifti", "CASE.nii.gz", "CASE.nii.gz"),
        ("scan.NII", "nifti", "scan.nii", "scan.nii.gz"),
        ("CASE_0000.nrrd", "nrrd", "CASE.nrrd", "CASE.nii.gz"),
        ("scan.nhdr", "nrrd", "scan.nrrd", "scan.nii.gz"),
        ("scan_0001.mhd", "mha", "scan_0001.mha", "scan_0001.nii.gz"),
        ("dicom/CT1", None, "CT1.nii.gz", "CT1.nii.gz"),
    ],
)
def test_names(name: str, fmt: str | None, same: str, nifti: str) -> None:
    assert file_format(name) == fmt
    assert output_name(name) == same
    assert output_name(name, "nifti") == nifti
    assert output_name(name, "mha") == case_name(name) + ".mha"
    assert output_name(name, "dicom-seg") == case_name(name) + ".dcm"


def test_unknown_output_format() -> None:
    with pytest.raises(ValueError, match="output format must be one of"):
        output_name("a.nii", "png")


def test_list_scans_and_channel_groups(tmp_path: Path) -> None:
    for name in ("b_0000.nrrd", "b_0001.nrrd", "a.mha", "notes.txt", ".hidden.nii"):
        (tmp_path / name).write_bytes(b"x")
    write_report(tmp_path / "series1" / "r.dcm")
    (tmp_path / "empty").mkdir()
    assert [p.name for p in list_scans(tmp_path)] == [
        "a.mha",
        "b_0000.nrrd",
        "b_0001.nrrd",
        "series1",
    ]
    assert list_scans(tmp_path / "series1") == [tmp_path / "series1"]
    with pytest.raises(InputFileError, match="no image files"):
        list_scans(tmp_path / "empty")
    cases, errors = discover_inputs([tmp_path], in_channels=2, series="1.2")
    assert errors == [] or all("series1" not in e.error for e in errors)
    by_name = {c.name: c for c in cases}
    assert by_name["b"].images == (tmp_path / "b_0000.nrrd", tmp_path / "b_0001.nrrd")
    assert by_name["b"].output_name == "b.nrrd" and by_name["series1"].series == "1.2"
