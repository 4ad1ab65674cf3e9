"""Tests for the MALC converter (segattn.data.malc) and data_scripts/prepare_malc.py."""

from __future__ import annotations

import gzip
import importlib.util
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from segattn.data.layout import load_dataset
from segattn.data.malc import GRID_TOLERANCE_MM, QUICKNAT_LABELS, prepare_malc
from segattn.data.phantoms import make_malc_dataset
from segattn.errors import SegattnError

SCRIPT = Path(__file__).resolve().parents[2] / "data_scripts" / "prepare_malc.py"
SHAPE = (4, 5, 6)
AFFINE = np.array(
    [[0.0, 0.0, -1.1, 30.0], [1.2, 0.05, 0.0, -20.0], [0.0, 1.0, 0.0, 10.0], [0, 0, 0, 1]]
)
# Neuromorphometrics IDs of hand-made labels: cortical parcels (odd left / even right), kept IDs
# and IDs outside QuickNAT's protocol (optic chiasm 69, vermis 71, vessel 63, basal forebrain 75).
IDS = [0, 45, 44, 101, 143, 207, 100, 142, 52, 4, 11, 69, 71, 63, 75, 46, 61, 23, 35, 50]
CLASSES = [0, 1, 19, 2, 2, 2, 20, 20, 3, 11, 12, 0, 0, 0, 0, 16, 32, 31, 13, 4]


def _script_main():
    spec = importlib.util.spec_from_file_location("prepare_malc", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def _label(seed: int, ids: list[int] = IDS) -> np.ndarray:
    rng = np.random.default_rng(seed)
    data = np.array(ids * (np.prod(SHAPE) // len(ids) + 1))[: np.prod(SHAPE)]
    return rng.permutation(data).reshape(SHAPE).astype(np.int16)


def _image(seed: int) -> np.ndarray:
    return np.random.default_rng(seed + 100).integers(0, 3000, SHAPE).astype(np.int16)


def _save(data: np.ndarray, path: Path, affine: np.ndarray = AFFINE) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = nib.Nifti1Image(data, affine)
    image.header.set_sform(affine, code=2)
    image.header.set_qform(affine, code=1)
    nib.save(image, path)
    return path


def _source(root: Path, ending: dict[str, str] | None = None) -> Path:
    """Training 1000_3 (.nii), 1001_3 (.nii.gz), testing 1003_3 (.nii.gz)."""
    ending = ending or {"1000_3": ".nii", "1001_3": ".nii.gz", "1003_3": ".nii.gz"}
    for i, (case, end) in enumerate(ending.items()):
        folder = "testing" if case == "1003_3" else "training"
        _save(_image(i), root / f"{folder}-images" / f"{case}{end}")
        _save(_label(i), root / f"{folder}-labels" / f"{case}_glm{end}")
    return root


def _data(path: Path) -> np.ndarray:
    return np.asarray(nib.load(path).dataobj)


def test_quicknat_conversion_is_voxel_exact(tmp_path: Path) -> None:
    src, dst = _source(tmp_path / "MALC"), tmp_path / "out"
    report = prepare_malc(src, dst)
    assert report.converted == ["1000_3", "1001_3", "1003_3"] and not report.failed
    lut = dict(zip(IDS, CLASSES, strict=True))
    for i, (subset, case) in enumerate([("Tr", "1000_3"), ("Tr", "1001_3"), ("Ts", "1003_3")]):
        label = nib.load(dst / f"labels{subset}" / f"{case}.nii.gz")
        expected = np.vectorize(lut.get)(_label(i))
        assert label.get_data_dtype() == np.uint8
        np.testing.assert_array_equal(np.asarray(label.dataobj), expected)
        np.testing.assert_allclose(label.affine, AFFINE, atol=1e-6)
        assert int(label.header["sform_code"]) == 2 and int(label.header["qform_code"]) == 1
        image = dst / f"images{subset}" / f"{case}_0000.nii.gz"
        np.testing.assert_array_equal(_data(image), _image(i))
        assert nib.load(image).get_data_dtype() == np.int16
    # the images are the source bytes: .nii.gz copied, .nii only gzip-compressed
    source_nii = (src / "training-images" / "1000_3.nii").read_bytes()
    assert gzip.decompress((dst / "imagesTr" / "1000_3_0000.nii.gz").read_bytes()) == source_nii
    copied = (dst / "imagesTr" / "1001_3_0000.nii.gz").read_bytes()
    assert copied == (src / "training-images" / "1001_3.nii.gz").read_bytes()

    meta = json.loads((dst / "dataset.json").read_text())
    assert meta["labels"] == QUICKNAT_LABELS and meta["numTraining"] == 2
    assert meta["malc_protocol"] == "quicknat" and meta["channel_names"] == {"0": "T1"}
    assert meta["original_label_ids"]["left_cerebral_cortex"] == 211
    assert meta["original_label_ids"]["right_ventral_dc"] == 61
    info = load_dataset(dst)
    assert [c.name for c in info.training] == ["1000_3", "1001_3"]
    assert [c.name for c in info.test] == ["1003_3"] and info.num_classes == 33
    assert not list(dst.rglob(".tmp-*")) and not list(src.rglob("*_0000*"))


def test_all_protocol_keeps_every_id_of_any_case(tmp_path: Path) -> None:
    src = tmp_path / "MALC"
    _save(_image(0), src / "training-images" / "a.nii.gz")
    _save(_label(0, [0, 143, 69]), src / "training-labels" / "a_glm.nii.gz")
    _save(_image(1), src / "training-images" / "b.nii.gz")
    _save(_label(1, [0, 4, 1234, 143]), src / "training-labels" / "b_glm.nii.gz")
    report = prepare_malc(src, tmp_path / "out", protocol="all")
    assert report.converted == ["a", "b"]
    meta = json.loads((tmp_path / "out" / "dataset.json").read_text())
    assert meta["labels"] == {
        "background": 0, "third_ventricle": 1, "optic_chiasm": 2,
        "left_middle_frontal_gyrus": 3, "label_1234": 4,
    }  # fmt: skip
    assert meta["original_label_ids"] == {
        "background": 0, "third_ventricle": 4, "optic_chiasm": 69,
        "left_middle_frontal_gyrus": 143, "label_1234": 1234,
    }  # fmt: skip
    assert meta["malc_protocol"] == "all"
    new = {0: 0, 4: 1, 69: 2, 143: 3, 1234: 4}
    for i, case in enumerate("ab"):
        source = _label(i, [[0, 143, 69], [0, 4, 1234, 143]][i])
        out = _data(tmp_path / "out" / "labelsTr" / f"{case}.nii.gz")
        np.testing.assert_array_equal(out, np.vectorize(new.get)(source))
        assert out.dtype == np.uint8


def test_grid_mismatch_fails_that_case_only(tmp_path: Path, capsys) -> None:
    src = _source(tmp_path / "MALC")
    _save(_label(0)[:, :, :5], src / "training-labels" / "1000_3_glm.nii")  # other shape
    shifted = AFFINE.copy()
    shifted[0, 3] += 0.5
    _save(_label(2), src / "testing-labels" / "1003_3_glm.nii.gz", shifted)  # other affine
    tiny = AFFINE.copy()
    tiny[1, 3] += GRID_TOLERANCE_MM / 2  # within tolerance: the same grid
    _save(_label(1), src / "training-labels" / "1001_3_glm.nii.gz", tiny)
    dst = tmp_path / "out"

    assert _script_main()(["--src", str(src), "--dst", str(dst)]) == 1
    out, err = capsys.readouterr()
    errors = err.strip().splitlines()
    assert len(errors) == 2 and all(e.startswith("prepare_malc.py: error: ") for e in errors)
    assert "1000_3_glm.nii: grid 4x5x5 does not match its image 1000_3.nii (4x5x6)" in errors[0]
    assert "1003_3_glm.nii.gz: affine differs from its image" in errors[1]
    assert "0.5 mm" in errors[1] and "Traceback" not in err
    assert "1 converted, 0 skipped (already done), 2 failed" in out
    assert sorted(p.name for p in dst.rglob("*.nii.gz")) == ["1001_3.nii.gz", "1001_3_0000.nii.gz"]
    info = load_dataset(dst)  # what was converted is a valid dataset
    assert [c.name for c in info.training] == ["1001_3"] and not info.test


def test_rerun_skips_finished_cases_and_overwrite_redoes_them(tmp_path: Path) -> None:
    src, dst = _source(tmp_path / "MALC"), tmp_path / "out"
    prepare_malc(src, dst)
    label = dst / "labelsTr" / "1001_3.nii.gz"
    stamp = label.stat().st_mtime_ns
    (dst / "labelsTs" / "1003_3.nii.gz").unlink()  # as if interrupted before this label

    report = prepare_malc(src, dst)
    assert report.skipped == ["1000_3", "1001_3"] and report.converted == ["1003_3"]
    assert label.stat().st_mtime_ns == stamp
    report = prepare_malc(src, dst, overwrite=True)
    assert report.converted == ["1000_3", "1001_3", "1003_3"] and not report.skipped
    assert label.stat().st_mtime_ns != stamp


def test_another_protocol_needs_overwrite(tmp_path: Path) -> None:
    src, dst = _source(tmp_path / "MALC"), tmp_path / "out"
    prepare_malc(src, dst)
    with pytest.raises(SegattnError, match="protocol 'quicknat'.*--overwrite"):
        prepare_malc(src, dst, protocol="all")
    report = prepare_malc(src, dst, protocol="all", overwrite=True)
    assert len(report.converted) == 3
    assert json.loads((dst / "dataset.json").read_text())["malc_protocol"] == "all"


def test_refuses_foreign_destination(tmp_path: Path) -> None:
    src, dst = _source(tmp_path / "MALC"), tmp_path / "out"
    (dst / "notes").mkdir(parents=True)
    with pytest.raises(SegattnError, match="not empty"):
        prepare_malc(src, dst)
    (dst / "dataset.json").write_text(json.dumps({"labels": {"background": 0, "liver": 1}}))
    with pytest.raises(SegattnError, match="holds a dataset"):
        prepare_malc(src, dst)


@pytest.mark.parametrize("where", [".", "nnunet", "training-images/x"])
def test_never_writes_into_the_source(tmp_path: Path, where: str, capsys) -> None:
    src = _source(tmp_path / "MALC")
    before = sorted(p for p in src.rglob("*"))
    dst = (src / where).resolve() if where != "." else src
    assert _script_main()(["--src", str(src), "--dst", str(dst)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "must not be the source folder or inside it" in err[0]
    assert sorted(p for p in src.rglob("*")) == before


def test_source_inside_an_output_folder_is_refused(tmp_path: Path) -> None:
    src = _source(tmp_path / "out" / "imagesTr")
    with pytest.raises(
        SegattnError, match="source folder must not be inside the output's imagesTr"
    ):
        prepare_malc(src, tmp_path / "out")


def test_missing_and_unmatched_files(tmp_path: Path) -> None:
    src = _source(tmp_path / "MALC")
    _save(_image(5), src / "training-images" / "1005_3.nii.gz")  # no label
    _save(_label(6), src / "training-labels" / "1006_3_glm.nii.gz")  # no image
    (src / "training-labels" / "README.txt").write_text("not a NIfTI: ignored")
    report = prepare_malc(src, tmp_path / "out")
    assert report.converted == ["1000_3", "1001_3", "1003_3"]
    assert len(report.failed) == 2
    assert any("1006_3_glm.nii.gz: no image training-images/1006_3" in f for f in report.failed)
    assert any("1005_3.nii.gz: no label training-labels/1005_3_glm" in f for f in report.failed)


def test_testing_images_without_labels_folder(tmp_path: Path) -> None:
    src = _source(tmp_path / "MALC")
    for path in (src / "testing-labels").iterdir():
        path.unlink()
    (src / "testing-labels").rmdir()
    dst = tmp_path / "out"
    report = prepare_malc(src, dst)
    assert report.converted == ["1000_3", "1001_3", "1003_3"] and not report.failed
    assert (dst / "imagesTs" / "1003_3_0000.nii.gz").is_file()
    assert not (dst / "labelsTs").exists()
    assert prepare_malc(src, dst).skipped == ["1000_3", "1001_3", "1003_3"]


def test_float_labels(tmp_path: Path) -> None:
    src = _source(tmp_path / "MALC")
    _save(_label(0).astype(np.float32), src / "training-labels" / "1000_3_glm.nii")
    broken = _label(1).astype(np.float32)
    broken[0, 0, 0] = 44.5
    _save(broken, src / "training-labels" / "1001_3_glm.nii.gz")
    report = prepare_malc(src, tmp_path / "out")
    assert report.converted == ["1000_3", "1003_3"]
    assert report.failed == [
        f"{src / 'training-labels' / '1001_3_glm.nii.gz'}: label values are not all whole numbers"
    ]
    lut = dict(zip(IDS, CLASSES, strict=True))
    out = _data(tmp_path / "out" / "labelsTr" / "1000_3.nii.gz")
    np.testing.assert_array_equal(out, np.vectorize(lut.get)(_label(0)))


def test_bad_source_and_arguments(tmp_path: Path, capsys) -> None:
    main = _script_main()
    assert main(["--src", str(tmp_path / "nope"), "--dst", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nope: MALC folder not found" in err[0]
    (tmp_path / "empty").mkdir()
    assert main(["--src", str(tmp_path / "empty"), "--dst", str(tmp_path / "out")]) == 1
    assert "training-images: missing" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["--src", "a", "--dst", "b", "--protocol", "freesurfer"])
    assert exit_info.value.code == 2
    with pytest.raises(ValueError, match="protocol"):
        prepare_malc(tmp_path, tmp_path / "out", protocol="freesurfer")
    assert not (tmp_path / "out").exists()


def test_native_phantom_prepares_to_the_nnunet_phantom(tmp_path: Path, capsys) -> None:
    args = {"cases": 3, "size": 32, "seed": 4, "test_cases": 1}
    native = make_malc_dataset(tmp_path / "native", layout="native", **args)
    nnunet = make_malc_dataset(tmp_path / "nnunet", **args)
    dst = tmp_path / "prepared"
    assert _script_main()(["--src", str(native.root), "--dst", str(dst)]) == 0
    assert "3 converted, 0 skipped (already done), 0 failed" in capsys.readouterr().out
    prepared = load_dataset(dst)
    assert prepared.labels == nnunet.labels == QUICKNAT_LABELS
    pairs = list(zip(prepared.training + prepared.test, nnunet.training + nnunet.test, strict=True))
    names = ["malc_000", "malc_001", "malc_002"]
    assert [a.name for a, _ in pairs] == [b.name for _, b in pairs] == names
    for a, b in pairs:
        for ours, theirs in ((a.images[0], b.images[0]), (a.label, b.label)):
            x, y = nib.load(ours), nib.load(theirs)
            assert x.get_data_dtype() == y.get_data_dtype()
            np.testing.assert_array_equal(np.asarray(x.dataobj), np.asarray(y.dataobj))
            np.testing.assert_array_equal(x.affine, y.affine)
            assert x.header.binaryblock == y.header.binaryblock
    # the native labels are Neuromorphometrics IDs: several parcels per hemisphere, vermis, ...
    ids = set(np.unique(_data(native.training[0].label)).tolist())
    assert {71, 72, 73} <= ids and not ids & {210, 211}
    assert len({i for i in ids if i >= 100 and i % 2}) >= 5  # left parcels
    assert len({i for i in ids if i >= 100 and not i % 2}) >= 5  # right parcels
