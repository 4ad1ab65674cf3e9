"""Tests for the MALC-like phantom: determinism, anatomy, contrast, geometry, labels (QuickNAT and
native Neuromorphometrics IDs), dataset writing in both layouts."""

from __future__ import annotations

import functools
import json

import nibabel as nib
import numpy as np
import pytest

from segattn.data.layout import load_dataset
from segattn.data.malc_labels import QUICKNAT_LABELS, to_quicknat
from segattn.data.phantoms import (
    FOV_MM,
    MALC_LABELS,
    ORIENTATIONS,
    available,
    make_dataset,
    make_malc_case,
    make_malc_dataset,
)
from segattn.data.phantoms._common import case_seeds, write_phantom_dataset
from segattn.errors import SegattnError

SIZE = 48


@functools.cache
def _case(seed: int, size: int = SIZE, orientation: str | None = None):
    return make_malc_case(seed, size, orientation=orientation)


@functools.cache
def _case_native(seed: int, size: int = SIZE):
    return make_malc_case(seed, size, native=True)


def _world_centre(label: np.ndarray, affine: np.ndarray, value: int) -> np.ndarray:
    voxels = np.argwhere(label == value).mean(axis=0)
    return affine[:3, :3] @ voxels + affine[:3, 3]


@pytest.mark.parametrize("native", [False, True])
def test_same_seed_same_case(native):
    a, b = make_malc_case(7, 32, native=native), make_malc_case(7, 32, native=native)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)


def test_different_seeds_differ():
    a, b = _case(0), _case(1)
    assert not np.array_equal(a.label, b.label)
    assert not np.allclose(a.affine, b.affine)


def test_types_shapes_and_spacing():
    image, label, affine = _case(0)
    assert image.shape == label.shape == (SIZE,) * 3
    assert image.dtype == np.float32 and label.dtype == np.uint8 and affine.shape == (4, 4)
    np.testing.assert_allclose(np.linalg.norm(affine[:3, :3], axis=0), FOV_MM / SIZE)
    assert np.isfinite(image).all() and image.min() >= 0


def test_structures_and_pairs():
    assert MALC_LABELS == QUICKNAT_LABELS
    names = [n for n in MALC_LABELS if n != "background"]
    assert len(names) == 32 and list(MALC_LABELS.values()) == list(range(len(MALC_LABELS)))
    left = {n.removeprefix("left_") for n in names if n.startswith("left_")}
    right = {n.removeprefix("right_") for n in names if n.startswith("right_")}
    assert left == right and len(left) >= 6


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_structure_present(seed):
    """All 32 QuickNAT structures; at the demo's 64^3 (2.75 mm voxels) the smallest (inferior
    lateral ventricles, accumbens) keep about a hundred voxels, most a few hundred."""
    counts = np.bincount(_case(seed, 64).label.ravel(), minlength=len(MALC_LABELS))
    assert len(counts) == len(MALC_LABELS)
    small = {n: int(counts[v]) for n, v in MALC_LABELS.items() if counts[v] < 60}
    assert not small
    assert np.median(counts[1:]) > 200
    # at 48^3 (3.7 mm voxels) every structure still has dozens
    assert np.bincount(_case(seed).label.ravel(), minlength=len(MALC_LABELS)).min() >= 25


def test_t1_contrast():
    image, label, _ = _case(0, 64)

    def mean(*names: str) -> float:
        return float(image[np.isin(label, [MALC_LABELS[n] for n in names])].mean())

    wm = mean("left_cerebral_white_matter", "right_cerebral_white_matter")
    gm = mean("left_cerebral_cortex", "right_cerebral_cortex")
    csf = mean("left_lateral_ventricle", "right_lateral_ventricle")
    assert wm > 1.3 * gm and gm > 1.3 * csf
    # Deep grey matter is about as dark as cortex: intensity alone cannot tell them apart.
    cortex = image[
        np.isin(label, [MALC_LABELS["left_cerebral_cortex"], MALC_LABELS["right_cerebral_cortex"]])
    ]
    low, high = np.percentile(cortex, [10, 90])
    for name in ("left_caudate", "right_hippocampus", "left_putamen"):
        values = image[label == MALC_LABELS[name]]
        assert ((values > low) & (values < high)).mean() > 0.3, name
    white = image[label == MALC_LABELS["left_cerebral_white_matter"]]
    assert ((white > low) & (white < high)).mean() < 0.1
    # Left and right look alike.
    assert abs(mean("left_thalamus") - mean("right_thalamus")) < 0.1 * mean("left_thalamus")
    # Pallidum brighter than putamen; ventricles and cisterns dark; cerebellum cortex < its WM.
    assert mean("left_pallidum", "right_pallidum") > 1.08 * mean("left_putamen", "right_putamen")
    for dark in ("csf", "third_ventricle", "fourth_ventricle", "left_inferior_lateral_ventricle"):
        assert mean(dark) < 0.6 * gm, dark
    cb_wm = mean("left_cerebellum_white_matter", "right_cerebellum_white_matter")
    assert cb_wm > 1.2 * mean("left_cerebellum_cortex", "right_cerebellum_cortex")


@pytest.mark.parametrize("orientation", ORIENTATIONS)
def test_world_anatomy_for_every_axis_order(orientation):
    _, label, affine = _case(3, 40, orientation)
    assert "".join(nib.aff2axcodes(affine)) == orientation

    def centre(name: str) -> np.ndarray:
        return _world_centre(label, affine, MALC_LABELS[name])

    for pair in ("thalamus", "hippocampus", "cerebral_cortex", "cerebellum_cortex", "caudate"):
        assert centre(f"left_{pair}")[0] < centre(f"right_{pair}")[0] - 10, pair
    head = _world_centre(label > 0, affine, True)
    assert centre("left_putamen")[0] < head[0] < centre("right_putamen")[0]
    # +y anterior, +z superior.
    assert (
        centre("left_caudate")[1] > centre("left_thalamus")[1] > centre("left_cerebellum_cortex")[1]
    )
    assert centre("left_cerebral_cortex")[2] > centre("left_thalamus")[2] > centre("brainstem")[2]


def test_relative_positions_of_the_smaller_structures():
    _, label, affine = _case(5, 64, "LPS")

    def centre(name: str) -> np.ndarray:
        return _world_centre(label, affine, MALC_LABELS[name])

    for side, lateral in (("left", -1), ("right", 1)):
        # pallidum medial to putamen; amygdala in front of the hippocampus; the temporal horn
        # lateral to and above the hippocampus; accumbens in front of and below the caudate
        assert lateral * (centre(f"{side}_putamen")[0] - centre(f"{side}_pallidum")[0]) > 5
        assert centre(f"{side}_amygdala")[1] > centre(f"{side}_hippocampus")[1] + 10
        horn, hippocampus = (
            centre(f"{side}_inferior_lateral_ventricle"),
            centre(f"{side}_hippocampus"),
        )
        assert lateral * (horn[0] - hippocampus[0]) > 2 and horn[2] > hippocampus[2] + 2
        assert centre(f"{side}_accumbens")[1] > centre(f"{side}_caudate")[1]
        assert centre(f"{side}_accumbens")[2] < centre(f"{side}_caudate")[2] - 10
        # ventral diencephalon below the thalamus
        assert centre(f"{side}_ventral_dc")[2] < centre(f"{side}_thalamus")[2] - 8
    third, fourth = centre("third_ventricle"), centre("fourth_ventricle")
    assert centre("left_thalamus")[0] < third[0] < centre("right_thalamus")[0]
    assert fourth[1] < centre("brainstem")[1] and fourth[2] < third[2] - 20
    # extracerebral CSF surrounds the brain: it extends further than the white matter
    csf = np.argwhere(label == MALC_LABELS["csf"])
    brain = np.argwhere(label == MALC_LABELS["left_cerebral_white_matter"])
    assert np.ptp(csf, axis=0).max() > np.ptp(brain, axis=0).max()


@pytest.mark.parametrize("seed", [0, 1])
def test_native_labels_are_neuromorphometrics_ids(seed):
    quicknat, native = _case(seed, 64), _case_native(seed, 64)
    np.testing.assert_array_equal(native.image, quicknat.image)
    np.testing.assert_array_equal(native.affine, quicknat.affine)
    np.testing.assert_array_equal(to_quicknat(native.label), quicknat.label)
    ids = set(np.unique(native.label).tolist())
    assert not ids & {210, 211}  # the cortex comes in parcels, as distributed
    # IDs QuickNAT maps to background: vermis lobules, optic chiasm, vessels
    assert {63, 64, 69, 71, 72, 73} <= ids
    # parcels: odd on the left hemisphere, even on the right, several on each side
    world_x = (native.affine[:3, :3] @ np.indices(native.label.shape).reshape(3, -1))[0]
    world_x = world_x + native.affine[0, 3]
    head_x = world_x[native.label.ravel() > 0].mean()
    parcels = native.label.ravel() >= 100
    odd = native.label.ravel() % 2 == 1
    assert len({i for i in ids if i >= 100 and i % 2}) >= 6
    assert len({i for i in ids if i >= 100 and not i % 2}) >= 6
    assert (
        world_x[parcels & odd].mean() < head_x - 20 < head_x + 20 < world_x[parcels & ~odd].mean()
    )


def test_axis_order_changes_storage_not_anatomy():
    """The same seed in two axis orders gives the same labels once both are turned to RAS."""
    ras = [
        np.asarray(nib.as_closest_canonical(nib.Nifti1Image(c.label, c.affine)).dataobj)
        for c in (_case(4, 32, "RAS"), _case(4, 32, "LIA"), _case(4, 32, "PIR"))
    ]
    for other in ras[1:]:
        assert (other == ras[0]).mean() > 0.999


def test_affine_is_oblique_with_offset():
    affines = [_case(seed).affine for seed in range(3)]
    for affine in affines:
        direction = affine[:3, :3] / np.linalg.norm(affine[:3, :3], axis=0)
        off_axis = np.sort(np.abs(direction), axis=0)[:2]
        assert off_axis.max() > 1e-3  # a small rotation, not a pure permutation
        assert np.abs(affine[:3, 3]).max() > 1.0


def test_cases_vary_in_pose_and_size():
    volumes = [np.count_nonzero(_case(seed).label) for seed in range(3)]
    assert len(set(volumes)) == 3


def test_bad_arguments():
    with pytest.raises(ValueError, match="size"):
        make_malc_case(0, 8)
    with pytest.raises(ValueError, match="orientation"):
        make_malc_case(0, 32, orientation="LRS")
    with pytest.raises(ValueError, match="test_cases"):
        make_malc_dataset("unused", cases=2, size=32, test_cases=2)
    with pytest.raises(ValueError, match="malc"):
        make_dataset("nope", "unused", 2)
    with pytest.raises(ValueError, match="layout"):
        make_dataset("malc", "unused", 2, size=32, layout="msd")
    assert "malc" in available()


def test_dataset_round_trip(tmp_path):
    out = tmp_path / "malc"
    info = make_malc_dataset(out, cases=3, size=32, seed=5, test_cases=1)
    assert info == load_dataset(out)
    assert [c.name for c in info.training] == ["malc_000", "malc_001"]
    assert [c.name for c in info.test] == ["malc_002"]
    assert info.labels == MALC_LABELS and info.channel_names == {"0": "T1"}
    assert info.test[0].label == out / "labelsTs" / "malc_002.nii.gz"
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["synthetic"] == {
        "kind": "malc", "cases": 3, "test_cases": 1, "seed": 5, "size": 32, "version": 2
    }  # fmt: skip

    expected = make_malc_case(case_seeds(5, 3)[1], 32)
    image, label = nib.load(info.training[1].images[0]), nib.load(info.training[1].label)
    assert image.get_data_dtype() == np.float32 and label.get_data_dtype() == np.uint8
    np.testing.assert_array_equal(np.asarray(label.dataobj), expected.label)
    np.testing.assert_allclose(image.get_fdata(dtype=np.float32), expected.image, rtol=1e-6)
    np.testing.assert_allclose(image.affine, expected.affine, atol=1e-4)
    assert int(image.header["qform_code"]) == int(image.header["sform_code"]) == 1
    assert not [p for p in out.rglob(".*")]


def test_dataset_reuse_overwrite_and_repair(tmp_path):
    out = tmp_path / "malc"
    make_malc_dataset(out, cases=2, size=32)
    stamp = (out / "labelsTr" / "malc_000.nii.gz").stat().st_mtime_ns
    make_malc_dataset(out, cases=2, size=32)  # complete and identical: skipped
    assert (out / "labelsTr" / "malc_000.nii.gz").stat().st_mtime_ns == stamp

    with pytest.raises(SegattnError, match="overwrite"):
        make_malc_dataset(out, cases=3, size=32)
    info = make_malc_dataset(out, cases=3, size=32, test_cases=2, overwrite=True)
    assert [c.name for c in info.training] == ["malc_000"]
    assert not (out / "labelsTr" / "malc_001.nii.gz").exists()  # moved to labelsTs

    (out / "imagesTs" / "malc_002_0000.nii.gz").unlink()
    info = make_malc_dataset(out, cases=3, size=32, test_cases=2)  # incomplete: regenerated
    assert info.test[1].images[0].is_file()


def test_refuses_foreign_dataset(tmp_path):
    (tmp_path / "dataset.json").write_text(json.dumps({"labels": {"background": 0, "x": 1}}))
    with pytest.raises(SegattnError, match="another dataset"):
        make_malc_dataset(tmp_path, cases=2, size=32)


def test_interrupted_write_never_looks_complete(tmp_path):
    calls = []

    def make_case(seed: int):
        if calls:
            raise KeyboardInterrupt
        calls.append(seed)
        return make_malc_case(seed, 32)

    with pytest.raises(KeyboardInterrupt):
        write_phantom_dataset(
            tmp_path, kind="malc", make_case=make_case, channel_names={"0": "T1"},
            labels=MALC_LABELS, cases=3, test_cases=0, seed=0, params={}, description="",
            overwrite=False,
        )  # fmt: skip
    assert not (tmp_path / "dataset.json").exists()
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == [
        "malc_000.nii.gz",
        "malc_000_0000.nii.gz",
    ]
    info = make_malc_dataset(tmp_path, cases=3, size=32)  # the next run completes it
    assert len(info.training) == 3


def test_native_layout_dataset(tmp_path):
    out = tmp_path / "raw"
    info = make_dataset("malc", out, 3, size=32, seed=5, test_cases=1, layout="native")
    assert info.layout == "malc2012" and info.labels == MALC_LABELS
    assert [c.name for c in info.training] == ["malc_000", "malc_001"]
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert files == [
        "synthetic.json",
        "testing-images/malc_002.nii.gz",
        "testing-labels/malc_002_glm.nii.gz",
        "training-images/malc_000.nii.gz",
        "training-images/malc_001.nii.gz",
        "training-labels/malc_000_glm.nii.gz",
        "training-labels/malc_001_glm.nii.gz",
    ]
    # the same cases, seeds and split as the nnU-Net layout
    expected = make_malc_case(case_seeds(5, 3)[2], 32, native=True)
    label = nib.load(out / "testing-labels" / "malc_002_glm.nii.gz")
    assert label.get_data_dtype() == np.uint8
    np.testing.assert_array_equal(np.asarray(label.dataobj), expected.label)
    meta = json.loads((out / "synthetic.json").read_text())
    assert meta == {"kind": "malc", "layout": "native", "cases": 3, "test_cases": 1, "seed": 5,
                    "size": 32, "version": 2}  # fmt: skip

    stamp = (out / "training-images" / "malc_000.nii.gz").stat().st_mtime_ns
    make_malc_dataset(out, cases=3, size=32, seed=5, test_cases=1, layout="native")  # reused
    assert (out / "training-images" / "malc_000.nii.gz").stat().st_mtime_ns == stamp
    with pytest.raises(SegattnError, match="different synthetic dataset"):
        make_malc_dataset(out, cases=2, size=32, layout="native")
    (out / "testing-labels" / "malc_002_glm.nii.gz").unlink()  # incomplete: regenerated
    make_malc_dataset(out, cases=3, size=32, seed=5, test_cases=1, layout="native")
    assert (out / "testing-labels" / "malc_002_glm.nii.gz").is_file()
    info = make_malc_dataset(out, cases=2, size=32, layout="native", overwrite=True)
    assert not (out / "testing-images" / "malc_002.nii.gz").exists()  # stale case removed
    assert [c.name for c in info.training] == ["malc_000", "malc_001"] and not info.test


def test_native_layout_refuses_foreign_folder(tmp_path):
    (tmp_path / "training-images").mkdir()
    (tmp_path / "training-images" / "1000_3.nii").write_bytes(b"real data")
    with pytest.raises(SegattnError, match="not empty"):
        make_malc_dataset(tmp_path, cases=2, size=32, layout="native")
    make_malc_dataset(tmp_path, cases=2, size=32, layout="native", overwrite=True)
    assert (tmp_path / "training-images" / "1000_3.nii").read_bytes() == b"real data"
