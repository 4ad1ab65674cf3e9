"""Reading NRRD/MetaImage into RAS geometry, writing label maps with the input's geometry,
the viewers' label files, and DICOM SEG round trips."""

from __future__ import annotations

import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
from dicom_helpers import itk_image, write_series
from monai.transforms import LoadImaged

from segattn.errors import InputFileError
from segattn.imageio import (
    GEOMETRY_TOLERANCE,
    ITKSNAP_FILE,
    SLICER_FILE,
    affine_from_itk,
    check_same_grid,
    itk_from_affine,
    label_colour,
    read_dicom_seg,
    read_itksnap_labels,
    read_scan,
    read_slicer_colours,
    write_dicom_seg,
    write_label_files,
    write_label_map,
)
from segattn.inference.preprocess import load_opened

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "inference"))
from inference_helpers import oblique_affine  # noqa: E402

LABELS = {"background": 0, "left caudate": 1, "right caudate": 2, "brain stem": 3}


@pytest.fixture
def nifti(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    data = rng.normal(size=(9, 7, 5)).astype(np.float32)
    affine = oblique_affine() @ np.diag([-1.0, 1.0, 1.0, 1.0])
    nib.save(nib.Nifti1Image(data, affine), tmp_path / "scan.nii.gz")
    return tmp_path / "scan.nii.gz"


@pytest.mark.parametrize("ending", [".nrrd", ".nhdr", ".mha", ".mhd"])
def test_itk_formats_read_as_the_nifti(nifti: Path, tmp_path: Path, ending: str) -> None:
    copy = tmp_path / f"copy{ending}"
    sitk.WriteImage(sitk.ReadImage(str(nifti)), str(copy))  # SimpleITK's own NIfTI geometry
    scan, ref = read_scan(copy), nib.load(nifti)
    np.testing.assert_array_equal(np.asanyarray(scan.image.dataobj), ref.get_fdata())
    np.testing.assert_allclose(scan.affine, ref.affine, atol=1e-5)
    check_same_grid(copy, scan.shape, scan.affine, nifti, ref.shape, ref.affine)


def test_vector_image_is_channels_last(tmp_path: Path) -> None:
    data = np.arange(2 * 3 * 4 * 2, dtype=np.float32).reshape(4, 3, 2, 2)  # (Z, Y, X, C)
    image = sitk.GetImageFromArray(data, isVector=True)
    sitk.WriteImage(image, str(tmp_path / "v.mha"))
    scan = read_scan(tmp_path / "v.mha")
    assert scan.shape == (2, 3, 4, 2)
    np.testing.assert_array_equal(np.asanyarray(scan.image.dataobj), data.transpose(2, 1, 0, 3))


def test_affine_conversion_round_trip() -> None:
    affine = oblique_affine() @ np.diag([1.0, -1.0, 1.0, 1.0])
    np.testing.assert_allclose(affine_from_itk(*itk_from_affine(affine)), affine, atol=1e-12)
    with pytest.raises(InputFileError, match="affine differs from b"):
        shifted = affine.copy()
        shifted[0, 3] += 2 * GEOMETRY_TOLERANCE
        check_same_grid("a", (2, 2, 2), affine, "b", (2, 2, 2), shifted)
    with pytest.raises(InputFileError, match=r"shape \(2, 2, 2\) differs from b \(2, 2, 3\)"):
        check_same_grid("a", (2, 2, 2), affine, "b", (2, 2, 3), affine)


def test_loading_opened_scan_matches_monai_load(nifti: Path) -> None:
    step = LoadImaged(keys="image", image_only=True)
    expected = step({"image": str(nifti)})["image"]
    got = load_opened(step, [read_scan(nifti).image], [nifti])
    np.testing.assert_array_equal(got.numpy(), expected.numpy())
    np.testing.assert_allclose(got.affine.numpy(), expected.affine.numpy())
    assert got.meta["filename_or_obj"] == expected.meta["filename_or_obj"]


@pytest.mark.parametrize("ending", [".nii.gz", ".nrrd", ".mha"])
def test_label_map_keeps_geometry(nifti: Path, tmp_path: Path, ending: str) -> None:
    ref = read_scan(nifti).image
    labels = np.random.default_rng(1).integers(0, 4, size=ref.shape).astype(np.uint8)
    target = tmp_path / f"labels{ending}"
    write_label_map(labels, ref, target, num_classes=4)
    back = read_scan(target)
    np.testing.assert_array_equal(np.asanyarray(back.image.dataobj), labels)
    assert np.asanyarray(back.image.dataobj).dtype == np.uint8
    np.testing.assert_allclose(back.affine, ref.affine, atol=1e-9)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_label_files_parse_back_with_stable_colours(tmp_path: Path) -> None:
    paths = write_label_files(tmp_path, LABELS)
    assert [p.name for p in paths] == [ITKSNAP_FILE, SLICER_FILE]
    snap = read_itksnap_labels(tmp_path / ITKSNAP_FILE)
    slicer = read_slicer_colours(tmp_path / SLICER_FILE)
    assert {v: n for v, (n, _) in snap.items()} == {
        0: "Clear Label",
        1: "left caudate",
        2: "right caudate",
        3: "brain stem",
    }
    assert {v: n for v, (n, _) in slicer.items()} == {
        0: "background",
        1: "left_caudate",
        2: "right_caudate",
        3: "brain_stem",
    }
    for value in range(1, 4):
        assert snap[value][1] == slicer[value][1][:3] == label_colour(value)
    colours = {label_colour(v) for v in range(1, 200)}
    assert len(colours) > 150 and (0, 0, 0) not in colours  # distinct, never background
    before = (tmp_path / SLICER_FILE).stat().st_mtime_ns
    write_label_files(tmp_path, dict(reversed(LABELS.items())))  # same labels: same text
    assert (tmp_path / SLICER_FILE).stat().st_mtime_ns == before


def test_dicom_seg_round_trip(tmp_path: Path) -> None:
    direction = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])  # sagittal
    data = np.zeros((6, 5, 4), np.int16)
    files = write_series(tmp_path / "s", itk_image(data, (0.9, 1.1, 3.0), (5, 6, 7), direction))
    labels = np.zeros((6, 5, 4), np.uint8)
    labels[1:4, 1:3, 0:2] = 1
    labels[4:6, 2:5, 1:4] = 3
    labels[0, 0, 3] = 2
    scan = read_scan(tmp_path / "s")  # slices sorted along the normal: reversed here
    assert list(scan.slices) == files[::-1]
    target = tmp_path / "seg.dcm"
    write_dicom_seg(labels, scan.slices, LABELS, target)
    np.testing.assert_array_equal(read_dicom_seg(target, scan.slices), labels)
    np.testing.assert_array_equal(read_dicom_seg(target, files), labels[:, :, ::-1])
    import highdicom as hd

    seg = hd.seg.segread(target)
    names = [seg.get_segment_description(n).segment_label for n in seg.get_segment_numbers()]
    assert names == ["left caudate", "right caudate", "brain stem"]
    referenced = {str(s.SeriesInstanceUID) for s in seg.ReferencedSeriesSequence}
    assert referenced == {scan.series_uid}
    with pytest.raises(InputFileError, match="do not fit the series"):
        write_dicom_seg(labels[:5], files, LABELS, tmp_path / "bad.dcm")
    assert not (tmp_path / "bad.dcm").exists()
