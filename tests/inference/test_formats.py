"""The same scan as NIfTI, NRRD, MetaImage and DICOM series gives the same labels (mapped through
world space), and each output keeps its input's geometry."""

from __future__ import annotations

import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
from inference_helpers import checkpoint_meta, oblique_affine, phantom, save_checkpoint

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "imageio"))
from dicom_helpers import write_series  # noqa: E402

from segattn.cli.main import main  # noqa: E402
from segattn.errors import InputFileError  # noqa: E402
from segattn.evaluation import evaluate_folders  # noqa: E402
from segattn.imageio import read_dicom_seg, read_scan  # noqa: E402

SHAPE = (13, 11, 9)


def _affines() -> dict[str, np.ndarray]:
    flipped = oblique_affine((1.1, 0.8, 1.7)) @ np.diag([1.0, -1.0, 1.0, 1.0])  # left-handed
    return {"oblique": oblique_affine((1.1, 0.8, 1.7)), "flipped": flipped}


@pytest.fixture(scope="module", params=sorted(_affines()))
def scans(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``inputs/`` with ``scan.nii.gz``, ``scan_nrrd.nrrd``, ``scan_mha.mha`` and the DICOM
    series folder ``scan_dcm``: one int16 volume; the copies are made by SimpleITK from the
    NIfTI file (its own geometry reading, independent of segattn)."""
    root = tmp_path_factory.mktemp(f"formats_{request.param}")
    inputs = root / "inputs"
    inputs.mkdir()
    data = np.round(phantom(SHAPE, seed=3) * 4).astype(np.int16)
    affine = _affines()[request.param]
    img = nib.Nifti1Image(data, affine)
    img.header.set_qform(affine, code=1)
    img.header.set_sform(affine, code=1)
    nib.save(img, inputs / "scan.nii.gz")
    itk = sitk.ReadImage(str(inputs / "scan.nii.gz"))
    sitk.WriteImage(itk, str(inputs / "scan_nrrd.nrrd"))
    sitk.WriteImage(itk, str(inputs / "scan_mha.mha"))
    write_series(inputs / "scan_dcm", sitk.Cast(itk, sitk.sitkInt16))
    save_checkpoint(root / "model.ckpt", checkpoint_meta())
    return root


def _predict(root: Path, out: Path, *extra: str) -> int:
    args = ["predict", "--model", str(root / "model.ckpt"), "--input", str(root / "inputs")]
    return main([*args, "--output", str(out), "--no-progress", "--device", "cpu", *extra])


def _in_world_of(labels: np.ndarray, affine: np.ndarray, ref: nib.Nifti1Image) -> np.ndarray:
    """``labels`` (on ``affine``'s grid) resampled by nearest voxel centre onto ``ref``'s grid;
    the grids must cover the same voxels (checked)."""
    index = np.stack(np.meshgrid(*[np.arange(s) for s in ref.shape[:3]], indexing="ij"), -1)
    world = index @ ref.affine[:3, :3].T + ref.affine[:3, 3]
    inv = np.linalg.inv(affine)
    mapped = world @ inv[:3, :3].T + inv[:3, 3]
    rounded = np.rint(mapped)
    assert np.max(np.abs(mapped - rounded)) < 1e-3  # voxel centres coincide
    i, j, k = (rounded[..., d].astype(int) for d in range(3))
    return labels[i, j, k]


def test_same_labels_in_every_format(scans: Path, tmp_path: Path) -> None:
    out = tmp_path / "pred"
    assert _predict(scans, out) == 0
    reference = nib.load(out / "scan.nii.gz")
    ref_labels = np.asanyarray(reference.dataobj)
    assert len(np.unique(ref_labels)) > 1  # the comparison means something
    for name in ("scan_nrrd.nrrd", "scan_mha.mha", "scan_dcm.nii.gz"):
        img = read_scan(out / name).image
        labels = np.asanyarray(img.dataobj)
        assert labels.dtype == np.uint8
        moved = _in_world_of(labels, img.affine, reference)
        np.testing.assert_array_equal(moved, ref_labels, err_msg=name)


def test_outputs_keep_input_geometry(scans: Path, tmp_path: Path) -> None:
    out = tmp_path / "pred"
    assert _predict(scans, out) == 0
    for source, output in (
        ("scan_nrrd.nrrd", "scan_nrrd.nrrd"),
        ("scan_mha.mha", "scan_mha.mha"),
    ):
        a = sitk.ReadImage(str(scans / "inputs" / source))
        b = sitk.ReadImage(str(out / output))
        assert b.GetSize() == a.GetSize()
        np.testing.assert_allclose(b.GetSpacing(), a.GetSpacing(), atol=1e-9)
        np.testing.assert_allclose(b.GetOrigin(), a.GetOrigin(), atol=1e-9)
        np.testing.assert_allclose(b.GetDirection(), a.GetDirection(), atol=1e-9)
    # a DICOM input: NIfTI with the series geometry, as SimpleITK reads the series
    series = sitk.ReadImage(
        sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(scans / "inputs" / "scan_dcm"))
    )
    nifti = sitk.ReadImage(str(out / "scan_dcm.nii.gz"))
    assert nifti.GetSize() == series.GetSize()
    np.testing.assert_allclose(nifti.GetOrigin(), series.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(nifti.GetDirection(), series.GetDirection(), atol=1e-6)


def test_other_output_formats_and_dicom_seg(scans: Path, tmp_path: Path) -> None:
    nifti = tmp_path / "nifti"
    assert _predict(scans, nifti) == 0
    expected = np.asanyarray(nib.load(nifti / "scan_dcm.nii.gz").dataobj)
    nrrd = tmp_path / "nrrd"
    assert _predict(scans, nrrd, "--output-format", "nrrd") == 0
    assert sorted(p.name for p in nrrd.glob("*.nrrd")) == [
        "scan.nrrd",
        "scan_dcm.nrrd",
        "scan_mha.nrrd",
        "scan_nrrd.nrrd",
    ]
    again = read_scan(nrrd / "scan_dcm.nrrd").image
    np.testing.assert_array_equal(np.asanyarray(again.dataobj), expected)
    seg = tmp_path / "seg"
    code = main(
        [
            "predict",
            "--model",
            str(scans / "model.ckpt"),
            "--input",
            str(scans / "inputs" / "scan_dcm"),
            str(scans / "inputs" / "scan.nii.gz"),
            "--output",
            str(seg),
            "--output-format",
            "dicom-seg",
            "--no-progress",
        ]
    )
    assert code == 1  # the NIfTI input cannot become a DICOM SEG; the series still does
    assert not (seg / "scan.dcm").exists()
    scan = read_scan(scans / "inputs" / "scan_dcm")
    np.testing.assert_array_equal(read_dicom_seg(seg / "scan_dcm.dcm", scan.slices), expected)


def test_evaluate_reads_every_format(scans: Path, tmp_path: Path) -> None:
    """Predictions in NRRD, MHA and from a DICOM series (stored in slice-position order, reversed
    for the flipped scan) against NIfTI references: matched by case name, Dice 1."""
    out = tmp_path / "pred"
    assert _predict(scans, out) == 0
    refs = tmp_path / "labels"
    refs.mkdir()
    reference = out / "scan.nii.gz"
    for case in ("scan_nrrd", "scan_mha", "scan_dcm"):
        (refs / f"{case}.nii.gz").write_bytes(reference.read_bytes())
    result = evaluate_folders(out, refs, allow_missing=True)
    assert sorted(result.per_case) == ["scan_dcm", "scan_mha", "scan_nrrd"]
    for dice in result.per_case.values():
        scored = [d for d in dice.values() if not np.isnan(d)]
        assert scored and all(d == 1.0 for d in scored)
    original = nib.load(reference)
    affine = original.affine.copy()
    affine[0, 3] += 0.5  # half a voxel off: not the same grid in any order
    nib.save(nib.Nifti1Image(np.asanyarray(original.dataobj), affine), refs / "scan.nii.gz")
    with pytest.raises(InputFileError, match="case scan: affine differs from label"):
        evaluate_folders(out, refs, allow_missing=True)


def test_two_channel_model_takes_one_scan_per_channel(tmp_path: Path) -> None:
    """Channel scans ``CASE_0000``/``CASE_0001`` as NIfTI files, NRRD files or DICOM series
    folders give the same labels."""
    ckpt = save_checkpoint(tmp_path / "model.ckpt", checkpoint_meta(in_channels=2))
    affine = _affines()["oblique"]
    for folder in ("nifti", "nrrd", "dicom"):
        (tmp_path / folder).mkdir()
    for channel in range(2):
        data = np.round(phantom(SHAPE, seed=channel) * 4).astype(np.int16)
        nifti = tmp_path / "nifti" / f"case_{channel:04d}.nii.gz"
        nib.save(nib.Nifti1Image(data, affine), nifti)
        itk = sitk.ReadImage(str(nifti))
        sitk.WriteImage(itk, str(tmp_path / "nrrd" / f"case_{channel:04d}.nrrd"))
        write_series(tmp_path / "dicom" / f"case_{channel:04d}", itk)
    outputs = {}
    for folder in ("nifti", "nrrd", "dicom"):
        out = tmp_path / f"pred_{folder}"
        args = ["predict", "--model", str(ckpt), "--input", str(tmp_path / folder)]
        assert main([*args, "--output", str(out), "--no-progress", "--output-format", "nifti"]) == 0
        outputs[folder] = np.asanyarray(nib.load(out / "case.nii.gz").dataobj)
    assert len(np.unique(outputs["nifti"])) > 1
    np.testing.assert_array_equal(outputs["nrrd"], outputs["nifti"])
    np.testing.assert_array_equal(outputs["dicom"], outputs["nifti"])


def test_ensemble_of_differently_preprocessed_models_on_a_float_scan(tmp_path: Path) -> None:
    """One opened MetaImage scan goes through two preprocessing chains; neither may change it
    for the other (float32 voxels are used straight from SimpleITK's buffer)."""
    data = phantom(SHAPE, seed=5)  # float32
    nifti = tmp_path / "in" / "scan.nii.gz"
    nifti.parent.mkdir()
    nib.save(nib.Nifti1Image(data, _affines()["flipped"]), nifti)
    sitk.WriteImage(sitk.ReadImage(str(nifti)), str(tmp_path / "in" / "scan2.mha"))
    models = [
        save_checkpoint(tmp_path / "a.ckpt", checkpoint_meta(orientation=None), seed=1),
        save_checkpoint(tmp_path / "b.ckpt", checkpoint_meta(), seed=2),
    ]
    out = tmp_path / "out"
    args = ["predict", "--model", *map(str, models), "--input", str(tmp_path / "in")]
    assert main([*args, "--output", str(out), "--no-progress"]) == 0
    expected = np.asanyarray(nib.load(out / "scan.nii.gz").dataobj)
    assert len(np.unique(expected)) > 1
    np.testing.assert_array_equal(
        np.asanyarray(read_scan(out / "scan2.mha").image.dataobj), expected
    )
