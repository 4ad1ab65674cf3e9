"""VISCERAL -> nnU-Net conversion against hand-made inputs, and the script through its main()."""

from __future__ import annotations

import gzip
import importlib.util
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from segattn.data.layout import load_dataset
from segattn.data.visceral import (
    VISCERAL_ORGANS,
    convert_visceral,
    find_cases,
    mask_voxels,
    merge_masks,
    select_organs,
    visceral_labels,
)
from segattn.errors import InputFileError

SCRIPT = Path(__file__).resolve().parents[2] / "data_scripts" / "prepare_visceral.py"
SHAPE = (6, 5, 4)
AFFINE = np.array(
    [[-0.8, 0.0, 0.0, 200.0], [0.0, -0.8, 0.0, 180.0], [0.0, 0.0, 2.5, -300.0], [0, 0, 0, 1]]
)
ALL = list(VISCERAL_ORGANS)


def _main():
    spec = importlib.util.spec_from_file_location("prepare_visceral", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def _save(path: Path, data: np.ndarray, affine: np.ndarray = AFFINE) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = nib.Nifti1Image(data, affine)
    image.header.set_qform(affine, code=1)
    image.header.set_sform(affine, code=1)
    nib.save(image, path)
    return path


def _mask(*boxes: tuple[slice, ...]) -> np.ndarray:
    mask = np.zeros(SHAPE, np.uint8)
    for box in boxes:
        mask[box] = 1
    return mask


LIVER = _mask(np.s_[0:4, 0:5, 0:2])  # 40 voxels
GALLBLADDER = _mask(np.s_[3:5, 0:2, 1:3])  # 8 voxels, 2 of them inside the liver
SPLEEN = _mask(np.s_[5:6, 0:5, 0:4])  # 20 voxels
SPLEEN_OTHER = _mask(np.s_[5:6, 0:2, 0:4])  # a second annotator's spleen, 8 voxels


def _volume(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(-1000, 1500, SHAPE).astype(np.int16)


@pytest.fixture
def src(tmp_path: Path) -> Path:
    """Two CTce_ThAb volumes, one CT_wb volume and their masks.

    10000100_1: liver (annotator 7), gallbladder (7), spleen (7 and 3): overlaps liver/gallbladder.
    10000104_1: liver (2), spleen (5 only); a landmarks file and an unknown RadLex ID to ignore.
    10000100_2 (CT_wb): liver (1).
    """
    root = tmp_path / "VISCERAL"
    vol, seg = root / "Volumes", root / "Segmentations"
    _save(vol / "10000100_1_CTce_ThAb.nii.gz", _volume(0))
    _save(vol / "10000104_1_CTce_ThAb.nii.gz", _volume(1))
    _save(vol / "10000100_2_CT_wb.nii.gz", _volume(2))
    _save(seg / "10000100_1_CTce_ThAb_58_7.nii.gz", LIVER)
    _save(seg / "10000100_1_CTce_ThAb_187_7.nii.gz", GALLBLADDER)
    _save(seg / "10000100_1_CTce_ThAb_86_7.nii.gz", SPLEEN)
    _save(seg / "10000100_1_CTce_ThAb_86_3.nii.gz", SPLEEN_OTHER)
    _save(seg / "10000104_1_CTce_ThAb_58_2.nii.gz", LIVER)
    _save(seg / "10000104_1_CTce_ThAb_86_5.nii.gz", SPLEEN.astype(np.float32))
    _save(seg / "10000104_1_CTce_ThAb_99999_2.nii.gz", SPLEEN)
    (seg / "10000104_1_CTce_ThAb_landmarks_2.fcsv").write_text("# landmarks\n")
    _save(seg / "10000100_2_CT_wb_58_1.nii.gz", SPLEEN)
    return root


def _labels(path: Path) -> np.ndarray:
    image = nib.load(path)
    assert image.get_data_dtype() == np.uint8
    return np.asarray(image.dataobj)


def _expected(*layers: tuple[np.ndarray, int]) -> np.ndarray:
    out = np.zeros(SHAPE, np.uint8)
    for mask, value in layers:
        out[mask > 0] = value
    return out


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
    }


def test_labels_and_selection() -> None:
    labels = visceral_labels()
    assert list(labels) == ["background", *ALL] and list(labels.values()) == list(range(21))
    assert ALL[:4] == ["liver", "spleen", "aorta", "trachea"] and ALL[-1] == "thyroid_gland"
    assert VISCERAL_ORGANS["left_psoas_major"] == 32249 and VISCERAL_ORGANS["thyroid_gland"] == 7578
    # a subset keeps the standard order, whatever order it is given in
    assert visceral_labels(["spleen", "liver"]) == {"background": 0, "liver": 1, "spleen": 2}
    with pytest.raises(ValueError, match="unknown organ.*choose from liver"):
        select_organs(["kidney"])
    with pytest.raises(ValueError, match="given twice"):
        select_organs(["liver", "liver"])


def test_merge_smaller_wins_and_counts() -> None:
    big, mid, small = (np.zeros(10, bool) for _ in range(3))
    big[:8], mid[4:9], small[6:8] = True, True, True
    labels = {"liver": 1, "spleen": 2, "aorta": 3}
    merged = merge_masks(
        {"liver": mask_voxels(big), "spleen": mask_voxels(mid), "aorta": mask_voxels(small)},
        labels,
        (10,),
    )
    assert merged.label.tolist() == [1, 1, 1, 1, 2, 2, 3, 3, 2, 0]
    assert merged.overlap_voxels == 4  # voxels 4..7
    assert merged.overlaps == {("spleen", "liver"): 4, ("aorta", "spleen"): 2}
    # equal sizes: the lower label value wins
    a, b = np.zeros(4, bool), np.zeros(4, bool)
    a[:2], b[1:3] = True, True
    tie = merge_masks({"spleen": mask_voxels(b), "liver": mask_voxels(a)}, labels, (4,))
    assert tie.label.tolist() == [1, 1, 2, 0] and tie.overlaps == {("liver", "spleen"): 1}
    with pytest.raises(ValueError, match="outside a grid"):
        merge_masks({"liver": np.array([12])}, labels, (10,))


def test_convert_voxel_exact(src: Path, tmp_path: Path) -> None:
    before = _snapshot(src)
    dst = tmp_path / "Dataset010_VISCERAL"
    report = convert_visceral(src, dst)
    assert _snapshot(src) == before  # nothing written into the source
    assert [(c.case, c.status) for c in report.cases] == [
        ("10000100_1", "converted"),
        ("10000104_1", "converted"),
    ]
    first = report.cases[0]
    assert first.overlap_voxels == 2 and first.overlaps == {("gallbladder", "liver"): 2}
    assert report.overlap_voxels == 2 and not report.failed

    labels = visceral_labels()
    expected = _expected(
        (LIVER, labels["liver"]), (SPLEEN_OTHER, labels["spleen"]), (GALLBLADDER, 8)
    )  # spleen: annotator 3 < 7; gallbladder (smaller) over liver
    np.testing.assert_array_equal(_labels(dst / "labelsTr" / "10000100_1.nii.gz"), expected)
    np.testing.assert_array_equal(
        _labels(dst / "labelsTr" / "10000104_1.nii.gz"), _expected((LIVER, 1), (SPLEEN, 2))
    )
    # the image is the source file, byte for byte; the label has its geometry
    for case in ("10000100_1", "10000104_1"):
        image = dst / "imagesTr" / f"{case}_0000.nii.gz"
        assert image.read_bytes() == (src / "Volumes" / f"{case}_CTce_ThAb.nii.gz").read_bytes()
        label = nib.load(dst / "labelsTr" / f"{case}.nii.gz")
        np.testing.assert_allclose(label.affine, AFFINE, atol=1e-6)
        assert int(label.header["sform_code"]) == int(label.header["qform_code"]) == 1

    meta = json.loads((dst / "dataset.json").read_text())
    assert meta["labels"] == labels and meta["channel_names"] == {"0": "CT"}
    assert meta["numTraining"] == 2 and meta["file_ending"] == ".nii.gz"
    assert meta["visceral"]["modality"] == "CTce_ThAb" and meta["visceral"]["annotator"] is None
    assert meta["visceral"]["radlex"]["liver"] == 58
    missing = meta["missing_labels"]
    assert missing["10000100_1"] == [n for n in ALL if n not in ("liver", "spleen", "gallbladder")]
    assert missing["10000104_1"] == [n for n in ALL if n not in ("liver", "spleen")]
    assert first.missing == missing["10000100_1"]
    info = load_dataset(dst)
    assert [c.name for c in info.training] == ["10000100_1", "10000104_1"] and info.is_ct
    assert not [p for p in dst.rglob(".*")]


def test_annotator_choice(src: Path, tmp_path: Path) -> None:
    dst = tmp_path / "out"
    report = convert_visceral(src, dst, annotator=7)
    np.testing.assert_array_equal(
        _labels(dst / "labelsTr" / "10000100_1.nii.gz"),
        _expected((LIVER, 1), (SPLEEN, 2), (GALLBLADDER, 8)),
    )
    # annotator 7 made no mask of the second volume: every organ is missing there
    np.testing.assert_array_equal(_labels(dst / "labelsTr" / "10000104_1.nii.gz"), 0)
    assert report.cases[1].missing == ALL
    meta = json.loads((dst / "dataset.json").read_text())
    assert meta["missing_labels"]["10000104_1"] == ALL and meta["visceral"]["annotator"] == 7


def test_organ_subset_is_renumbered(src: Path, tmp_path: Path) -> None:
    dst = tmp_path / "out"
    report = convert_visceral(src, dst, organs=["spleen", "liver"])
    meta = json.loads((dst / "dataset.json").read_text())
    assert meta["labels"] == {"background": 0, "liver": 1, "spleen": 2}
    assert meta["missing_labels"] == {}  # both organs annotated in both volumes
    # without the gallbladder its voxels stay liver and nothing overlaps
    np.testing.assert_array_equal(
        _labels(dst / "labelsTr" / "10000100_1.nii.gz"), _expected((LIVER, 1), (SPLEEN_OTHER, 2))
    )
    assert report.overlap_voxels == 0


def test_modality_filter(src: Path, tmp_path: Path) -> None:
    cases = find_cases(src, modality="CT_wb")
    assert [(c.name, list(c.masks)) for c in cases] == [("10000100_2", ["liver"])]
    convert_visceral(src, tmp_path / "wb", modality="CT_wb")
    meta = json.loads((tmp_path / "wb" / "dataset.json").read_text())
    assert meta["numTraining"] == 1 and meta["name"] == "VISCERAL_CT_wb"
    with pytest.raises(InputFileError, match="no volumes named <patient>_<vol>_MRT1_wb"):
        convert_visceral(src, tmp_path / "mr", modality="MRT1_wb")


def test_uncompressed_volume_is_gzipped_unchanged(src: Path, tmp_path: Path) -> None:
    volume = src / "Volumes" / "10000104_1_CTce_ThAb.nii.gz"
    raw = gzip.decompress(volume.read_bytes())
    volume.unlink()
    (src / "Volumes" / "10000104_1_CTce_ThAb.nii").write_bytes(raw)
    convert_visceral(src, tmp_path / "out")
    out = tmp_path / "out" / "imagesTr" / "10000104_1_0000.nii.gz"
    assert gzip.decompress(out.read_bytes()) == raw


def test_bad_grid_skips_case_and_exits_1(src: Path, tmp_path: Path, capsys) -> None:
    bad = src / "Segmentations" / "10000104_1_CTce_ThAb_86_5.nii.gz"
    _save(bad, np.zeros((6, 5, 5), np.uint8))
    dst = tmp_path / "out"
    assert _main()(["--src", str(src), "--dst", str(dst)]) == 1
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and str(bad) in err[0] and "grid (6, 5, 5) differs" in err[0]
    assert "10000104_1 skipped" in err[0] and "Traceback" not in captured.err
    assert "1 converted, 0 already converted, 1 failed" in captured.out
    assert sorted(p.name for p in (dst / "labelsTr").iterdir()) == ["10000100_1.nii.gz"]
    assert not (dst / "imagesTr" / "10000104_1_0000.nii.gz").exists()
    meta = json.loads((dst / "dataset.json").read_text())
    assert meta["numTraining"] == 1 and list(meta["missing_labels"]) == ["10000100_1"]

    shifted = AFFINE.copy()
    shifted[0, 3] += 0.5
    _save(bad, SPLEEN, shifted)
    assert _main()(["--src", str(src), "--dst", str(dst)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "affine differs" in err[0] and "max difference 0.5" in err[0]


def test_rerun_skips_then_overwrite(src: Path, tmp_path: Path, capsys) -> None:
    dst = tmp_path / "out"
    main = _main()
    assert main(["--src", str(src), "--dst", str(dst)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("10000100_1: converted; no mask for aorta, trachea")
    assert out[0].endswith("2 overlapping voxels (gallbladder over liver 2)")
    assert out[-1].startswith("2 converted, 0 already converted, 0 failed; 2 overlapping voxels")
    label = dst / "labelsTr" / "10000100_1.nii.gz"
    stamp = label.stat().st_mtime_ns
    assert main(["--src", str(src), "--dst", str(dst)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("10000100_1: skipped (already converted); no mask for aorta")
    assert out[-1].startswith("0 converted, 2 already converted")
    assert label.stat().st_mtime_ns == stamp
    assert json.loads((dst / "dataset.json").read_text())["numTraining"] == 2

    # other settings into the same folder: refused with one line, then allowed with --overwrite
    assert main(["--src", str(src), "--dst", str(dst), "--organs", "liver"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "other settings" in err[0] and "--overwrite" in err[0]
    assert main(["--src", str(src), "--dst", str(dst), "--organs", "liver", "--overwrite"]) == 0
    capsys.readouterr()
    assert label.stat().st_mtime_ns != stamp
    assert json.loads((dst / "dataset.json").read_text())["labels"] == {"background": 0, "liver": 1}


def test_interrupted_run_with_other_settings_is_refused(src: Path, tmp_path: Path) -> None:
    dst = tmp_path / "out"
    convert_visceral(src, dst, organs=["liver"])
    (dst / "dataset.json").unlink()  # as if interrupted before the end
    with pytest.raises(InputFileError, match="converted with other settings"):
        convert_visceral(src, dst)
    (src / "Volumes" / "10000104_1_CTce_ThAb.nii.gz").unlink()
    with pytest.raises(InputFileError, match=r"holds cases that this conversion does not make"):
        convert_visceral(src, dst, organs=["liver"])
    report = convert_visceral(src, dst, organs=["liver"], overwrite=True)
    assert [c.case for c in report.cases] == ["10000100_1"]
    assert sorted(p.name for p in (dst / "imagesTr").iterdir()) == ["10000100_1_0000.nii.gz"]


def test_destination_inside_source_is_refused(src: Path, capsys) -> None:
    before = _snapshot(src)
    assert _main()(["--src", str(src), "--dst", str(src / "nnunet")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "inside the source folder" in err[0]
    assert _snapshot(src) == before


@pytest.mark.parametrize(
    "argv",
    [
        ["--src", "a", "--dst", "b", "--organs", "kidney"],
        ["--src", "a", "--dst", "b", "--annotator", "x"],
        ["--dst", "b"],
    ],
)
def test_bad_arguments_exit_2(argv: list[str], capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        _main()(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("prepare_visceral.py: error:")


def test_missing_folders_exit_1(tmp_path: Path, capsys) -> None:
    assert _main()(["--src", str(tmp_path / "nope"), "--dst", str(tmp_path / "out")]) == 1
    assert capsys.readouterr().err.strip() == (
        f"prepare_visceral.py: error: {tmp_path / 'nope'}: no such folder"
    )
    (tmp_path / "src" / "Volumes").mkdir(parents=True)
    assert _main()(["--src", str(tmp_path / "src"), "--dst", str(tmp_path / "out")]) == 1
    assert "Segmentations: missing folder" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
