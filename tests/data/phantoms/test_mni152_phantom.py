"""Tests for the MNI152-derived subjects: labels are the argmax of the deformed template maps,
the identity deformation reproduces the template, geometry as stated, determinism, dataset.json."""

from __future__ import annotations

import functools
import json

import nibabel as nib
import numpy as np
import pytest
from scipy.interpolate import RegularGridInterpolator

from segattn.data.layout import load_dataset
from segattn.data.phantoms import MNI152_LABELS, available, make_dataset, make_mni152_case
from segattn.data.phantoms.mni152 import (
    FOV_CENTRE,
    TEMPLATE_FILES,
    load_template,
    mni152_grid,
    sample_template,
    subject_coordinates,
    template_folder,
    tissue_labels,
    voxel_coordinates,
)

SIZE = 24  # 8.33 mm voxels, (19, 24, 21): milliseconds per case


@functools.cache
def _template_from_files() -> dict[str, np.ndarray]:
    """The template maps read directly with nibabel, independently of ``load_template``."""
    folder = template_folder()
    return {
        key: np.asarray(nib.load(str(folder / name)).dataobj).astype(np.float64) / 255.0
        for key, name in TEMPLATE_FILES.items()
    }


def test_kind_is_registered():
    assert "mni152" in available()


@pytest.mark.parametrize("size", [24, 100])
def test_grid_geometry_as_stated(size):
    shape, affine = mni152_grid(size)
    spacing = 200.0 / size
    assert shape == tuple(round(f / spacing) for f in (160.0, 200.0, 176.0))
    np.testing.assert_allclose(affine[:3, :3], np.eye(3) * spacing)
    centre = affine[:3, :3] @ ((np.asarray(shape) - 1) / 2.0) + affine[:3, 3]
    np.testing.assert_allclose(centre, FOV_CENTRE, atol=1e-9)
    if size == 100:
        assert shape == (80, 100, 88) and spacing == 2.0


def test_case_geometry_and_values():
    image, label, affine = make_mni152_case(3, SIZE)
    shape, grid_affine = mni152_grid(SIZE)
    assert image.shape == label.shape == shape
    assert image.dtype == np.float32 and label.dtype == np.uint8
    np.testing.assert_array_equal(affine, grid_affine)
    assert set(np.unique(label).tolist()) == {0, 1, 2}
    # T1 contrast: white matter brighter than grey matter, brighter than background
    means = [float(image[label == k].mean()) for k in range(3)]
    assert means[0] < means[1] < means[2]


def test_same_seed_same_case_other_seed_other_case():
    a, b, c = make_mni152_case(5, SIZE), make_mni152_case(5, SIZE), make_mni152_case(6, SIZE)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a.label, c.label)
    assert not np.allclose(a.image, c.image)


def test_labels_are_argmax_of_the_deformed_maps():
    """At voxels across the grid, the label equals an independent trilinear interpolation
    (scipy's RegularGridInterpolator on the files read with nibabel) of the GM/WM maps at the
    template point the subject's deformation maps the voxel to, then the argmax."""
    seed = 11
    maps = _template_from_files()
    affine_t = load_template().affine
    axes = [affine_t[d, 3] + np.arange(maps["gm"].shape[d]) * affine_t[d, d] for d in range(3)]
    shape, affine = mni152_grid(SIZE)
    coords = subject_coordinates(np.random.default_rng(seed), shape, affine)
    label = make_mni152_case(seed, SIZE).label
    rng = np.random.default_rng(0)
    voxels = np.argwhere(label > 0)
    voxels = np.concatenate([voxels[rng.choice(len(voxels), 40, replace=False)], [[0, 0, 0]]])
    points = coords[:, voxels[:, 0], voxels[:, 1], voxels[:, 2]].T.astype(np.float64)
    prob = {
        key: RegularGridInterpolator(axes, maps[key], bounds_error=False, fill_value=0.0)(points)
        for key in ("gm", "wm")
    }
    expected = np.argmax(np.stack([1 - prob["gm"] - prob["wm"], prob["gm"], prob["wm"]]), axis=0)
    # a tie within float32 rounding could flip a voxel; there is none at these voxels
    np.testing.assert_array_equal(label[tuple(voxels.T)], expected)


def test_deformation_moves_the_template_smoothly():
    shape, affine = mni152_grid(SIZE)
    world = voxel_coordinates(shape, affine)
    coords = subject_coordinates(np.random.default_rng(2), shape, affine)
    moved = np.linalg.norm(coords - world, axis=0)
    assert 1.0 < float(moved.mean()) < 25.0
    # neighbouring voxels (8.3 mm apart) land 0.7-1.4 times as far apart: no folding or tearing
    step = np.linalg.norm(np.diff(coords, axis=1), axis=0)
    assert 0.7 * affine[0, 0] < step.min() and step.max() < 1.4 * affine[0, 0]


def test_identity_deformation_reproduces_the_template():
    template = load_template()
    maps = _template_from_files()
    corner = np.array([60, 90, 70])
    shape = (9, 11, 7)  # odd, non-cubic block of the template's own grid
    affine = template.affine.copy()
    affine[:3, 3] = template.affine[:3, :3] @ corner + template.affine[:3, 3]
    t1, gm, wm = sample_template(voxel_coordinates(shape, affine), template)
    block = tuple(slice(c, c + n) for c, n in zip(corner, shape, strict=True))
    for name, sampled in (("t1", t1), ("gm", gm), ("wm", wm)):
        np.testing.assert_allclose(sampled, maps[name][block], atol=1e-6)
    expected = np.argmax(np.stack([1 - maps["gm"] - maps["wm"], maps["gm"], maps["wm"]]), axis=0)
    np.testing.assert_array_equal(tissue_labels(gm, wm), expected[block])
    assert {1, 2} <= set(np.unique(expected[block]).tolist())


def test_dataset_layout_and_json(tmp_path):
    info = make_dataset("mni152", tmp_path / "mni", 3, size=SIZE, test_cases=1)
    assert [c.name for c in info.training] == ["mni152_000", "mni152_001"]
    assert [c.name for c in info.test] == ["mni152_002"]
    meta = json.loads((tmp_path / "mni" / "dataset.json").read_text())
    assert meta["channel_names"] == {"0": "T1"}
    assert meta["labels"] == MNI152_LABELS
    assert meta["numTraining"] == 2
    case = info.training[1]
    seed = meta["synthetic"]["seed"]
    from segattn.data.phantoms._common import case_seeds

    expected = make_mni152_case(case_seeds(seed, 3)[1], SIZE)
    written = nib.load(str(case.label))
    np.testing.assert_array_equal(np.asarray(written.dataobj), expected.label)
    np.testing.assert_allclose(written.affine, expected.affine)
    again = load_dataset(tmp_path / "mni")
    assert again.label_names == ["background", "grey_matter", "white_matter"]


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError):
        make_mni152_case(0, 8)
    with pytest.raises(ValueError):
        make_mni152_case(-1, SIZE)
    with pytest.raises(ValueError):
        make_dataset("mni152", tmp_path / "x", 2, size=SIZE, layout="native")
