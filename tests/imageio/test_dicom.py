"""DICOM series folders: series selection and one clear line for each series that is not one
regular volume; in ``predict`` nothing is written for such a case and the others finish."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest
from dicom_helpers import edit, itk_image, write_report, write_series

from segattn.cli.main import main
from segattn.errors import InputFileError
from segattn.imageio import list_series, read_scan, write_dicom_seg

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "inference"))
from inference_helpers import checkpoint_meta, save_checkpoint  # noqa: E402

SPACING = (0.7, 0.8, 2.5)


def _volume(shape: tuple[int, int, int] = (7, 6, 5), seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(-100, 300, size=shape).astype(np.int16)


def _series(folder: Path, data: np.ndarray | None = None, **kwargs) -> list[Path]:
    data = _volume() if data is None else data
    image = itk_image(data, SPACING, (-20.0, 10.0, 30.0), np.eye(3))
    return write_series(folder, image, **kwargs)


def _position(path: Path) -> np.ndarray:
    return np.asarray([float(v) for v in pydicom.dcmread(path).ImagePositionPatient])


def _broken(root: Path, problem: str) -> Path:
    """A series folder with one kind of problem."""
    folder = root / problem
    if problem == "missing_slice":
        files = _series(folder)
        files[2].unlink()
    elif problem == "uneven_spacing":
        files = _series(folder)
        edit(files[3], ImagePositionPatient=list(_position(files[3]) + [0.0, 0.0, 0.9]))
    elif problem == "gantry_tilt":
        files = _series(folder)
        for k, path in enumerate(files):  # each slice shifted sideways: a sheared stack
            edit(path, ImagePositionPatient=list(_position(path) + [0.0, 0.4 * k, 0.0]))
    elif problem == "mixed_sizes":
        files = _series(folder, series_uid="1.2.3.4.5")
        other = itk_image(_volume((9, 6, 1)), SPACING, (-20.0, 10.0, 42.5), np.eye(3))
        write_series(folder, other, series_uid="1.2.3.4.5", prefix="z")
    elif problem == "report":
        write_report(folder / "report.dcm")
    elif problem == "segmentation":
        source = root / "seg_source"
        files = _series(source)
        labels = np.zeros((7, 6, 5), np.uint8)
        labels[2:5, 1:4, 1:3] = 1
        folder.mkdir()
        write_dicom_seg(labels, files, {"background": 0, "liver": 1}, folder / "seg.dcm")
    elif problem == "same_position":
        files = _series(folder)
        edit(files[1], ImagePositionPatient=list(_position(files[2])))
    return folder


MESSAGES = {
    "missing_slice": r"1 slice\(s\) missing between slice001.dcm and slice003.dcm "
    r"\(gap 5.000 mm, spacing 2.500 mm\)",
    "uneven_spacing": r"uneven slice spacing \(1.600 to 3.400 mm\)",
    "gantry_tilt": r"gantry tilt of 9.09 degrees",
    "mixed_sizes": r"mixed image sizes \(7x6, 9x6\)",
    "report": r"no image series, only non-image DICOM: Basic Text SR Storage",
    "segmentation": r"no image series, only non-image DICOM: Segmentation Storage",
    "same_position": r"two slices at the same position \(slice001.dcm, slice002.dcm\)",
}


@pytest.mark.parametrize("problem", sorted(MESSAGES))
def test_each_bad_series_is_one_clear_error(tmp_path: Path, problem: str) -> None:
    folder = _broken(tmp_path, problem)
    with pytest.raises(InputFileError, match=MESSAGES[problem]) as info:
        read_scan(folder)
    assert str(info.value).startswith(f"{folder}: ") and "\n" not in str(info.value)


def test_good_series_reads_voxels_in_position_order(tmp_path: Path) -> None:
    data = _volume()
    files = _series(tmp_path / "s", data)
    for k, path in enumerate(files):  # file names no longer follow the slice order
        path.rename(path.with_name(f"{(7 * k) % 5}_{path.name}"))
    scan = read_scan(tmp_path / "s")
    np.testing.assert_array_equal(np.asanyarray(scan.image.dataobj), data)
    expected = np.diag([-SPACING[0], -SPACING[1], SPACING[2], 1.0])
    expected[:3, 3] = [20.0, -10.0, 30.0]  # LPS origin -> RAS
    np.testing.assert_allclose(scan.affine, expected, atol=1e-6)
    assert scan.format == "dicom" and len(scan.slices) == 5


def test_rounded_positions_are_one_regular_series(tmp_path: Path) -> None:
    # scanners round positions: gaps of 2.5 mm that wobble by 0.02 mm (< 1 % of the spacing)
    # are one regular grid, 0.05 mm (2 %) is not
    files = _series(tmp_path / "rounded")
    edit(files[2], ImagePositionPatient=list(_position(files[2]) + [0.0, 0.0, 0.02]))
    scan = read_scan(tmp_path / "rounded")
    assert len(scan.slices) == 5
    files = _series(tmp_path / "uneven")
    edit(files[2], ImagePositionPatient=list(_position(files[2]) + [0.0, 0.0, 0.05]))
    with pytest.raises(InputFileError, match=r"uneven slice spacing \(2.450 to 2.550 mm\)"):
        read_scan(tmp_path / "uneven")


def test_several_series_need_a_choice(tmp_path: Path) -> None:
    folder = tmp_path / "study"
    _series(folder, _volume(seed=1), series_uid="1.2.3.1", description="AX 2.5", prefix="a")
    _series(folder, _volume(seed=2), series_uid="1.2.3.2", description="AX late", prefix="b")
    write_report(folder / "report.dcm", series_uid="1.2.3.9")
    with pytest.raises(InputFileError) as info:
        read_scan(folder)
    message = str(info.value)
    assert "2 image series, pick one with --series UID" in message
    assert "1.2.3.1 (AX 2.5, CT, 5 slices)" in message
    assert "1.2.3.2 (AX late, CT, 5 slices)" in message
    chosen = read_scan(folder, series="1.2.3.2")
    np.testing.assert_array_equal(np.asanyarray(chosen.image.dataobj), _volume(seed=2))
    with pytest.raises(InputFileError, match="series 1.2.3.9 is a Basic Text SR Storage"):
        read_scan(folder, series="1.2.3.9")
    with pytest.raises(InputFileError, match="no series 9.9 here"):
        read_scan(folder, series="9.9")
    assert [s.uid for s in list_series(folder)] == ["1.2.3.1", "1.2.3.2", "1.2.3.9"]


def test_predict_skips_bad_series_and_finishes_the_others(tmp_path: Path, capsys) -> None:
    inputs = tmp_path / "inputs"
    _series(inputs / "good", _volume((10, 9, 6)))
    bad = [_broken(inputs, p) for p in ("missing_slice", "gantry_tilt", "report")]
    ckpt = save_checkpoint(tmp_path / "model.ckpt", checkpoint_meta())
    out = tmp_path / "pred"
    args = ["predict", "--model", str(ckpt), "--input", str(inputs), "--output", str(out)]
    code = main([*args, "--no-progress", "--device", "cpu"])
    assert code == 1
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 3
    for folder, line in zip(sorted(bad), errors, strict=True):
        assert line.startswith(f"segattn: error: {folder}: ")
    written = sorted(p.name for p in out.iterdir())
    assert written == ["good.nii.gz", "labels.ctbl", "labels.itksnap.txt"]
