"""Predictor: label maps on the input grid, with the input's header geometry, for 2D and 3D."""

from __future__ import annotations

import gzip
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from inference_helpers import SHAPE, oblique_affine, phantom, save_image
from nibabel.orientations import axcodes2ornt, inv_ornt_aff, ornt_transform

from segattn.errors import InputFileError
from segattn.inference import Predictor
from segattn.inference.checkpoint import load_checkpoint


def _flipped_affine() -> np.ndarray:
    aff = np.diag([-1.1, 0.8, -2.0, 1.0])  # LAI-ish storage
    aff[:3, 3] = [20.0, -10.0, 30.0]
    return aff


def _raw_scaling(path: Path) -> tuple[float, float]:
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rb") as fh:
        raw = fh.read(348)
    slope, inter = np.frombuffer(raw[112:120], "<f4")
    return float(slope), float(inter)


@pytest.mark.parametrize("affine", [oblique_affine(), _flipped_affine()], ids=["oblique", "flip"])
@pytest.mark.parametrize("ending", [".nii", ".nii.gz"])
def test_output_keeps_input_geometry(make_ckpt, tmp_path: Path, affine, ending: str) -> None:
    src = save_image(tmp_path / f"CASE_0000{ending}", phantom(), affine, qform_code=1, sform_code=4)
    predictor = Predictor(make_ckpt(), device="cpu", progress=False)
    [result] = predictor.predict_files([src], tmp_path / "out")
    assert result.ok, result.error
    assert result.output == tmp_path / "out" / f"CASE{ending}"
    inp, out = nib.load(src), nib.load(result.output)
    assert out.shape == inp.shape == SHAPE
    assert out.get_data_dtype() == np.uint8
    np.testing.assert_allclose(out.affine, inp.affine, atol=1e-6)
    np.testing.assert_allclose(out.header.get_qform(), inp.header.get_qform(), atol=1e-6)
    np.testing.assert_allclose(out.header.get_sform(), inp.header.get_sform(), atol=1e-6)
    assert int(out.header["qform_code"]) == 1 and int(out.header["sform_code"]) == 4
    assert _raw_scaling(result.output) == (1.0, 0.0)
    labels = np.asanyarray(out.dataobj)
    assert set(np.unique(labels)) <= {0, 1, 2}
    assert len(np.unique(labels)) >= 2  # the random net is not constant
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]


def _save_scaled_int16(path: Path, raw: np.ndarray, affine: np.ndarray, slope, inter) -> None:
    """An int16 .nii.gz whose header scales voxels by scl_slope/scl_inter (patched in bytes:
    nibabel recomputes the scaling of in-memory images on save)."""
    plain = path.with_name("plain.nii")
    save_image(plain, raw.astype(np.int16), affine)
    data = bytearray(plain.read_bytes())
    data[112:120] = np.array([slope, inter], "<f4").tobytes()
    path.write_bytes(gzip.compress(bytes(data)))
    plain.unlink()


def test_int16_with_scaling_reads_scaled_values(make_ckpt, tmp_path: Path) -> None:
    raw = np.round(phantom() * 10)
    _save_scaled_int16(tmp_path / "scaled.nii.gz", raw, oblique_affine(), 0.25, -40.0)
    stored = nib.load(tmp_path / "scaled.nii.gz")
    assert stored.get_data_dtype() == np.int16
    assert (stored.dataobj.slope, stored.dataobj.inter) == (0.25, -40.0)  # nibabel moves them
    values = raw.astype(np.float32) * 0.25 - 40.0
    save_image(tmp_path / "float.nii.gz", values, oblique_affine())
    predictor = Predictor(
        make_ckpt(intensity={"kind": "ct", "window": [-40, 0]}), device="cpu", progress=False
    )
    scaled, out_img = predictor.predict_image(tmp_path / "scaled.nii.gz")
    plain, _ = predictor.predict_image(tmp_path / "float.nii.gz")
    np.testing.assert_array_equal(scaled, plain)
    # a file read without its scaling would give other labels
    save_image(tmp_path / "unscaled.nii.gz", raw.astype(np.float32), oblique_affine())
    unscaled, _ = predictor.predict_image(tmp_path / "unscaled.nii.gz")
    assert not np.array_equal(unscaled, plain)
    out_path = tmp_path / "out.nii.gz"
    nib.save(out_img, out_path)
    assert nib.load(out_path).get_data_dtype() == np.uint8
    assert _raw_scaling(out_path) == (1.0, 0.0)


def _reoriented(img: nib.Nifti1Image, axcodes: tuple[str, str, str]) -> nib.Nifti1Image:
    """The same world image stored with other voxel axes (flipped/permuted)."""
    current = nib.io_orientation(img.affine)
    transform = ornt_transform(current, axcodes2ornt(axcodes))
    data = nib.orientations.apply_orientation(np.asanyarray(img.dataobj), transform)
    affine = img.affine @ inv_ornt_aff(transform, img.shape)
    return nib.Nifti1Image(data, affine)


@pytest.mark.parametrize(
    "ckpt_kwargs",
    [
        {"mode": "3d"},
        {"mode": "2d", "slice_axis": 1},
        {"mode": "2d", "slice_axis": 2},
        {"mode": "3d", "patch_size": [16, 16, 16]},
    ],
    ids=["3d", "2d-coronal", "2d-axial", "3d-windows"],
)
def test_orientation_invariance(make_ckpt, tmp_path: Path, ckpt_kwargs) -> None:
    base = nib.Nifti1Image(phantom(), np.diag([1.0, 1.2, 1.5, 1.0]))
    stored = _reoriented(base, ("P", "I", "L"))
    assert stored.shape != base.shape  # axes really permuted
    nib.save(base, tmp_path / "ras.nii.gz")
    nib.save(stored, tmp_path / "pil.nii.gz")
    predictor = Predictor(make_ckpt(**ckpt_kwargs), device="cpu", progress=False)
    _, a = predictor.predict_image(tmp_path / "ras.nii.gz")
    _, b = predictor.predict_image(tmp_path / "pil.nii.gz")
    np.testing.assert_allclose(b.affine, stored.affine)
    a_canon = np.asanyarray(nib.as_closest_canonical(a).dataobj)
    b_canon = np.asanyarray(nib.as_closest_canonical(b).dataobj)
    assert len(np.unique(a_canon)) >= 2
    np.testing.assert_array_equal(a_canon, b_canon)


def test_without_reorientation_world_labels_differ(make_ckpt, tmp_path: Path) -> None:
    """Negative control for the invariance test: the net is orientation-sensitive."""
    base = nib.Nifti1Image(phantom(), np.diag([1.0, 1.2, 1.5, 1.0]))
    nib.save(base, tmp_path / "ras.nii.gz")
    nib.save(_reoriented(base, ("P", "I", "L")), tmp_path / "pil.nii.gz")
    predictor = Predictor(make_ckpt(orientation=None), device="cpu", progress=False)
    _, a = predictor.predict_image(tmp_path / "ras.nii.gz")
    _, b = predictor.predict_image(tmp_path / "pil.nii.gz")
    a_canon = np.asanyarray(nib.as_closest_canonical(a).dataobj)
    b_canon = np.asanyarray(nib.as_closest_canonical(b).dataobj)
    assert not np.array_equal(a_canon, b_canon)


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_2d_slices_along_the_stored_axis(make_ckpt, tmp_path: Path, axis: int) -> None:
    """2D prediction equals running the net on each slice of the RAS volume by hand."""
    data = phantom()
    src = save_image(tmp_path / "img.nii.gz", data, np.eye(4))  # already RAS
    ckpt = make_ckpt(mode="2d", slice_axis=axis, intensity={"kind": "none"})
    labels, _ = Predictor(ckpt, device="cpu", sw_batch_size=3, progress=False).predict_image(src)
    net = load_checkpoint(ckpt).build_net()
    vol = torch.from_numpy(data)[None]  # (1, X, Y, Z)
    with torch.no_grad():
        slices = torch.movedim(vol, 1 + axis, 1)[0][:, None]  # (S, 1, a, b)
        expected = torch.movedim(net(slices).argmax(1), 0, axis).numpy()
    np.testing.assert_array_equal(labels, expected)


def test_resampling_checkpoint_returns_input_grid(make_ckpt, tmp_path: Path) -> None:
    src = save_image(tmp_path / "img.nii.gz", phantom(), oblique_affine((1.2, 0.9, 2.0)))
    predictor = Predictor(make_ckpt(spacing=[1.5, 1.5, 1.5]), device="cpu", progress=False)
    probs, ref = predictor.predict_probabilities(src)
    assert probs.shape == (3, *SHAPE) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(0), 1.0, atol=1e-4)
    labels, img = predictor.predict_image(src)
    assert labels.shape == SHAPE
    np.testing.assert_array_equal(labels, probs.argmax(0))
    np.testing.assert_allclose(img.affine, ref.affine)


def test_probabilities_agree_with_labels_without_resampling(make_ckpt, tmp_path: Path) -> None:
    src = save_image(tmp_path / "img.nii.gz", phantom(), _flipped_affine())
    predictor = Predictor(make_ckpt(), device="cpu", progress=False)
    probs, _ = predictor.predict_probabilities(src)
    labels, _ = predictor.predict_image(src)
    np.testing.assert_array_equal(labels, probs.argmax(0))


def test_ensemble_of_identical_models_equals_one(make_ckpt, tmp_path: Path) -> None:
    src = save_image(tmp_path / "img.nii.gz", phantom(), _flipped_affine())
    one = make_ckpt("a.ckpt", seed=1)
    single, _ = Predictor(one, device="cpu", progress=False).predict_image(src)
    double, _ = Predictor([one, one], device="cpu", progress=False).predict_image(src)
    np.testing.assert_array_equal(single, double)


def test_ensemble_views_and_mismatched_labels(make_ckpt, tmp_path: Path) -> None:
    src = save_image(tmp_path / "img.nii.gz", phantom())
    views = [make_ckpt(f"v{a}.ckpt", mode="2d", slice_axis=a) for a in range(3)]
    labels, _ = Predictor(views, device="cpu", progress=False).predict_image(src)
    assert labels.shape == SHAPE
    other = make_ckpt("other.ckpt", labels={"background": 0, "x": 1, "y": 2})
    with pytest.raises(InputFileError, match="labels differ"):
        Predictor([views[0], other], device="cpu")


def test_multichannel_4d_file_and_channel_files_agree(make_ckpt, tmp_path: Path) -> None:
    data = phantom((*SHAPE, 2))
    save_image(tmp_path / "four_d.nii.gz", data, _flipped_affine())
    folder = tmp_path / "channels"
    folder.mkdir()
    for c in range(2):
        save_image(folder / f"CASE_{c:04d}.nii.gz", data[..., c], _flipped_affine())
    predictor = Predictor(make_ckpt(in_channels=2), device="cpu", progress=False)
    from_4d, _ = predictor.predict_image(tmp_path / "four_d.nii.gz")
    from_files, _ = predictor.predict_image(
        [folder / "CASE_0000.nii.gz", folder / "CASE_0001.nii.gz"]
    )
    np.testing.assert_array_equal(from_4d, from_files)
    [result] = predictor.predict_files([folder], tmp_path / "out")
    assert result.ok and result.output == tmp_path / "out" / "CASE.nii.gz"
    with pytest.raises(InputFileError, match="the model takes 2"):
        predictor.predict_image(folder / "CASE_0000.nii.gz")


def test_bad_constructor_arguments(make_ckpt) -> None:
    with pytest.raises(ValueError, match="overlap"):
        Predictor(make_ckpt(), overlap=1.0)
    with pytest.raises(ValueError, match="sw_batch_size"):
        Predictor(make_ckpt(), sw_batch_size=0)
    with pytest.raises(ValueError, match="device"):
        Predictor(make_ckpt(), device="tpu")
