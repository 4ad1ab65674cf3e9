"""VISCERAL-like CT phantom: determinism, HU per tissue, anisotropic grids, organs, both layouts."""

from __future__ import annotations

import functools
import importlib.util
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from segattn.data.layout import load_dataset
from segattn.data.phantoms import VISCERAL_LABELS, available, make_dataset
from segattn.data.phantoms._common import case_seeds
from segattn.data.phantoms._torso import TISSUES, T
from segattn.data.phantoms.visceral import (
    _MISSABLE,
    AXIAL_ORIENTATIONS,
    _render,
    make_visceral_case,
    make_visceral_dataset,
    visceral_annotation,
)
from segattn.data.visceral import VISCERAL_ORGANS
from segattn.errors import SegattnError

SCRIPT = Path(__file__).resolve().parents[3] / "data_scripts" / "prepare_visceral.py"
SIZE = 64


@functools.cache
def _case(seed: int, size: int = SIZE, orientation: str | None = None):
    return make_visceral_case(seed, size, orientation=orientation)


def _spacing(affine: np.ndarray) -> np.ndarray:
    return np.linalg.norm(affine[:3, :3], axis=0)


def _world_centre(label: np.ndarray, affine: np.ndarray, value: int) -> np.ndarray:
    voxels = np.argwhere(label == value).mean(axis=0)
    return affine[:3, :3] @ voxels + affine[:3, 3]


def test_same_seed_same_case_and_seeds_differ():
    a, b = make_visceral_case(7, 32), make_visceral_case(7, 32)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    other = make_visceral_case(8, 32)
    assert not np.allclose(a.affine, other.affine)
    assert visceral_annotation(7) == visceral_annotation(7)


def test_types_and_anisotropic_axial_grid():
    ratios = []
    for seed in range(4):
        image, label, affine = _case(seed)
        assert image.dtype == np.float32 and label.dtype == np.uint8 and affine.shape == (4, 4)
        assert image.shape == label.shape and image.shape[:2] == (SIZE, SIZE)
        assert np.array_equal(image, np.rint(image)) and -1024 <= image.min() < image.max() <= 3071
        pixel, _, thickness = _spacing(affine)
        assert 400 / SIZE - 0.01 < pixel < 460 / SIZE + 0.01
        ratios.append(thickness / pixel)
        codes = "".join(nib.aff2axcodes(affine))
        assert codes in AXIAL_ORIENTATIONS
        # the slices cover the torso from the pelvis to the neck
        assert 700 < image.shape[2] * thickness < 900
    assert all(1.8 < r < 3.8 for r in ratios) and max(ratios) - min(ratios) > 0.2


def test_size_changes_sampling_not_anatomy():
    """The same seed at two sizes: organ volumes and world positions agree."""
    small, large = _case(3, 48), _case(3, 96)
    for organ in ("liver", "right_kidney", "left_lung", "urinary_bladder"):
        value = VISCERAL_LABELS[organ]
        volumes = [
            np.count_nonzero(c.label == value) * np.prod(_spacing(c.affine)) for c in (small, large)
        ]
        assert volumes[0] == pytest.approx(volumes[1], rel=0.2), organ
        centres = [_world_centre(c.label, c.affine, value) for c in (small, large)]
        assert np.abs(centres[0] - centres[1]).max() < 10.0, organ


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_organ_present(seed):
    counts = np.bincount(_case(seed).label.ravel(), minlength=len(VISCERAL_LABELS))
    assert len(counts) == len(VISCERAL_LABELS) == 21
    # At 64 pixels (about 7 mm x 7 mm x 13-26 mm voxels) even the adrenal glands keep a few.
    small = {n: int(counts[v]) for n, v in VISCERAL_LABELS.items() if counts[v] < 5}
    assert not small
    assert counts[VISCERAL_LABELS["liver"]] > 10 * counts[VISCERAL_LABELS["gallbladder"]]


def test_left_right_and_craniocaudal_positions():
    _, label, affine = _case(4, SIZE, "LPS")

    def centre(name: str) -> np.ndarray:
        return _world_centre(label, affine, VISCERAL_LABELS[name])

    for pair in ("lung", "kidney", "adrenal_gland", "psoas_major", "rectus_abdominis"):
        assert centre(f"right_{pair}")[0] > centre(f"left_{pair}")[0] + 20, pair  # RAS: +x right
    assert centre("liver")[0] > 20 > -20 > centre("spleen")[0]
    z = {name: centre(name)[2] for name in VISCERAL_ORGANS}
    assert z["thyroid_gland"] > z["trachea"] > z["right_lung"] > z["liver"] > z["lumbar_vertebra_1"]
    assert z["lumbar_vertebra_1"] > z["urinary_bladder"]
    assert centre("sternum")[1] > centre("aorta")[1] > centre("lumbar_vertebra_1")[1]  # +y anterior


def test_organ_hounsfield_units():
    image, label, _ = _case(0, 96)

    def median(name: str) -> float:
        return float(np.median(image[label == VISCERAL_LABELS[name]]))

    assert median("right_lung") < -750 and median("left_lung") < -750
    assert median("trachea") < -300
    assert 50 < median("liver") < 120 and 60 < median("spleen") < 140
    assert 130 < median("aorta") < 310
    assert median("right_kidney") > 110 and median("left_kidney") > 110
    assert -10 < median("gallbladder") < 40 and -10 < median("urinary_bladder") < 40
    assert median("lumbar_vertebra_1") > 250 and median("sternum") > 200
    assert 20 < median("right_psoas_major") < 70
    assert image[0, 0, :].max() < -900  # air in the corners


def test_render_tissue_ranges():
    """Blocks of each tissue class come out in the HU ranges of contrast-enhanced CT (up to
    5 HU for the noise left in a block's median)."""
    n = 16
    tissue = np.broadcast_to(
        np.repeat(np.arange(len(TISSUES), dtype=np.uint8), n), (n, n, n * len(TISSUES))
    )
    expected = {
        "air": (-1010, -980),
        "lung": (-880, -820),
        "fat": (-115, -85),
        "muscle": (40, 60),
        "liver": (60, 110),
        "blood": (150, 300),
        "kidney_cortex": (150, 220),
        "cortical_bone": (700, 1000),
        "marrow": (200, 300),
        "bile": (0, 20),
        "urine": (0, 20),
    }
    for seed in range(5):
        image = _render(tissue, np.random.default_rng(seed))
        for name, (lo, hi) in expected.items():
            block = image[3:-3, 3:-3, T[name] * n + 3 : T[name] * n + n - 3]
            assert lo - 5 <= float(np.median(block)) <= hi + 5, (seed, name)


def test_annotation_draws():
    drawn = [visceral_annotation(s) for s in range(60)]
    assert all(1 <= a.annotator <= 8 for a in drawn)
    assert all(set(a.missing) <= set(_MISSABLE) for a in drawn)
    assert 10 < sum(bool(a.missing) for a in drawn) < 40
    assert any(len(a.missing) == 2 for a in drawn)
    seconds = [a for a in drawn if a.second_reader]
    assert seconds and all(r > a.annotator for a in seconds for _, r in [a.second_reader])
    assert all(a.second_reader[0] not in a.missing for a in seconds)


def test_bad_arguments():
    with pytest.raises(ValueError, match="size"):
        make_visceral_case(0, 8)
    with pytest.raises(ValueError, match="axial"):
        make_visceral_case(0, 32, orientation="PIR")
    with pytest.raises(ValueError, match="layout"):
        make_visceral_dataset("unused", cases=2, size=32, layout="msd")
    with pytest.raises(ValueError, match="no test split"):
        make_visceral_dataset("unused", cases=2, size=32, test_cases=1, layout="native")
    with pytest.raises(ValueError, match="test_cases"):
        make_visceral_dataset("unused", cases=2, size=32, test_cases=2)
    assert "visceral" in available()


def test_nnunet_dataset(tmp_path):
    out = tmp_path / "nn"
    info = make_dataset("visceral", out, 4, size=32, seed=5, test_cases=1)
    assert info == load_dataset(out)
    names = [f"{90_000_000 + i}_1" for i in range(4)]
    assert [c.name for c in info.training] == names[:3] and [c.name for c in info.test] == names[3:]
    assert info.labels == VISCERAL_LABELS and info.channel_names == {"0": "CT"} and info.is_ct
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["synthetic"] == {
        "kind": "visceral", "cases": 4, "test_cases": 1, "seed": 5, "size": 32,
        "layout": "nnunet", "version": 1,
    }  # fmt: skip
    seeds = case_seeds(5, 4)
    annotations = [visceral_annotation(s) for s in seeds]
    recorded = {n: list(a.missing) for n, a in zip(names, annotations, strict=True) if a.missing}
    assert meta["missing_labels"] == recorded
    for case, case_seed, annotation in zip(info.training + info.test, seeds, annotations):
        expected = make_visceral_case(case_seed, 32)
        image, label = nib.load(case.images[0]), nib.load(case.label)
        assert image.get_data_dtype() == np.int16 and label.get_data_dtype() == np.uint8
        np.testing.assert_array_equal(np.asarray(image.dataobj), expected.image)
        truth = expected.label.copy()
        truth[np.isin(truth, [VISCERAL_LABELS[n] for n in annotation.missing])] = 0
        np.testing.assert_array_equal(np.asarray(label.dataobj), truth)
        np.testing.assert_allclose(image.affine, expected.affine, atol=1e-4)
        np.testing.assert_allclose(label.affine, image.affine, atol=1e-6)


def test_native_layout_converts_to_the_nnunet_layout(tmp_path, capsys):
    native, nnunet, converted = tmp_path / "native", tmp_path / "nn", tmp_path / "converted"
    n = 6
    info = make_dataset("visceral", native, n, size=32, seed=3, layout="native")
    assert info.layout == "visceral" and len(info.training) == n
    assert all(c.images[0].is_file() for c in info.training)
    seeds = case_seeds(3, n)
    first = visceral_annotation(seeds[0])
    masks = sorted(p.name for p in (native / "Segmentations").iterdir())
    expected_first = {
        f"90000000_1_CTce_ThAb_{r}_{first.annotator}.nii.gz"
        for o, r in VISCERAL_ORGANS.items()
        if o not in first.missing
    }
    assert expected_first <= {m for m in masks if m.startswith("90000000_1_")}
    # the seed 3 draws exercise missing organs and a second annotator
    annotations = [visceral_annotation(s) for s in seeds]
    assert any(a.missing for a in annotations) and any(a.second_reader for a in annotations)

    make_visceral_dataset(nnunet, n, size=32, seed=3)
    spec = importlib.util.spec_from_file_location("prepare_visceral", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--src", str(native), "--dst", str(converted)]) == 0
    assert f"{n} converted, 0 already converted, 0 failed; 0 overlapping" in capsys.readouterr().out

    a = json.loads((nnunet / "dataset.json").read_text())
    b = json.loads((converted / "dataset.json").read_text())
    assert a.pop("synthetic")["layout"] == "nnunet"
    assert a == b and b["missing_labels"]
    for sub in ("imagesTr", "labelsTr"):
        names = sorted(p.name for p in (nnunet / sub).iterdir())
        assert names == sorted(p.name for p in (converted / sub).iterdir()) and len(names) == n
        for name in names:
            x, y = nib.load(nnunet / sub / name), nib.load(converted / sub / name)
            assert x.get_data_dtype() == y.get_data_dtype()
            np.testing.assert_array_equal(np.asarray(x.dataobj), np.asarray(y.dataobj))
            np.testing.assert_array_equal(x.affine, y.affine)
            assert x.header["descrip"] == y.header["descrip"]


def test_reuse_overwrite_and_refusal(tmp_path):
    out = tmp_path / "nn"
    make_visceral_dataset(out, 2, size=32)
    label = out / "labelsTr" / "90000000_1.nii.gz"
    stamp = label.stat().st_mtime_ns
    make_visceral_dataset(out, 2, size=32)  # complete and identical: reused
    assert label.stat().st_mtime_ns == stamp
    with pytest.raises(SegattnError, match="overwrite"):
        make_visceral_dataset(out, 3, size=32)
    info = make_visceral_dataset(out, 3, size=32, test_cases=2, overwrite=True)
    assert [c.name for c in info.training] == ["90000000_1"]
    assert not (out / "labelsTr" / "90000001_1.nii.gz").exists()  # moved to labelsTs

    native = tmp_path / "native"
    make_visceral_dataset(native, 2, size=32, layout="native")
    volume = native / "Volumes" / "90000000_1_CTce_ThAb.nii.gz"
    stamp = volume.stat().st_mtime_ns
    make_visceral_dataset(native, 2, size=32, layout="native")
    assert volume.stat().st_mtime_ns == stamp
    with pytest.raises(SegattnError, match="different synthetic dataset"):
        make_visceral_dataset(native, 1, size=32, layout="native")
    make_visceral_dataset(native, 1, size=32, layout="native", overwrite=True)
    assert sorted(p.name for p in (native / "Volumes").iterdir()) == [volume.name]
    assert not [p for p in (native / "Segmentations").iterdir() if "90000001" in p.name]

    foreign = tmp_path / "real"
    (foreign / "Volumes").mkdir(parents=True)
    (foreign / "Volumes" / "10000100_1_CTce_ThAb.nii.gz").write_bytes(b"not ours")
    with pytest.raises(SegattnError, match="another dataset"):
        make_visceral_dataset(foreign, 1, size=32, layout="native")
