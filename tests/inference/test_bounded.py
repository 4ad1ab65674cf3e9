"""The slab-wise (bounded-memory) Predictor equals the whole-volume MONAI reference."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from inference_helpers import oblique_affine, phantom, save_image

from segattn.data.transforms import preprocess_transforms
from segattn.inference import Predictor
from segattn.inference.preprocess import run_preprocessing

ODD = (21, 26, 17)


def _flipped_affine() -> np.ndarray:
    aff = np.diag([-1.1, 0.8, -2.0, 1.0])
    aff[:3, 3] = [20.0, -10.0, 30.0]
    return aff


def _predict(ckpts, src: Path, method: str, **kwargs):  # type: ignore[no-untyped-def]
    p = Predictor(ckpts, device="cpu", progress=False, method=method, sw_batch_size=3, **kwargs)
    probs, _ = p.predict_probabilities(src)
    labels, _ = p.predict_image(src)
    return probs, labels


CASES = {
    "3d-windows": {"patch_size": [8, 10, 7]},
    "3d-windows-resample": {"patch_size": [8, 10, 7], "spacing": [1.3, 1.1, 1.7]},
    "3d-window-wider-than-volume": {"patch_size": [30, 12, 25]},
    "3d-whole": {},
    "2d-sagittal": {"mode": "2d", "slice_axis": 0},
    "2d-axial-resample": {"mode": "2d", "slice_axis": 2, "spacing": [1.5, 1.5, 1.5]},
    "3d-no-orientation-resample": {
        "patch_size": [8, 8, 8],
        "orientation": None,
        "spacing": [1.4, 1.0, 1.8],
    },
}


BLOCKS = 3e-5  # GB: below the 56 kB one-block buffer of the windowed cases -> column blocks


@pytest.mark.parametrize(
    "case, affine, max_memory",
    [(c, "flip", 1.0) for c in CASES]
    + [(c, "oblique", 1.0) for c in ("3d-windows", "3d-windows-resample", "2d-axial-resample")]
    + [(c, a, BLOCKS) for c in ("3d-windows", "3d-windows-resample") for a in ("flip", "oblique")]
    + [("3d-no-orientation-resample", "oblique", BLOCKS)],
)
def test_slabs_equal_whole_volume(make_ckpt, tmp_path: Path, case, affine, max_memory) -> None:
    aff = _flipped_affine() if affine == "flip" else oblique_affine()
    src = save_image(tmp_path / "img.nii.gz", phantom(ODD), aff)
    ckpt = make_ckpt(**CASES[case])
    ref_probs, ref_labels = _predict(ckpt, src, "whole")
    probs, labels = _predict(ckpt, src, "slabs", max_memory=max_memory)
    assert probs.shape == (3, *ODD) and labels.shape == ODD and labels.dtype == np.uint8
    np.testing.assert_allclose(probs, ref_probs, rtol=0, atol=1e-5)
    np.testing.assert_array_equal(labels, ref_labels)
    assert len(np.unique(labels)) >= 2


@pytest.mark.parametrize("weights", [None, [1, 2, 3]])
def test_view_ensemble_is_the_weighted_hand_average(make_ckpt, tmp_path, weights) -> None:
    src = save_image(tmp_path / "img.nii.gz", phantom(ODD), _flipped_affine())
    views = [make_ckpt(f"v{a}.ckpt", seed=a, mode="2d", slice_axis=a) for a in range(3)]
    singles = [_predict(v, src, "whole")[0] for v in views]
    w = np.array(weights or [1, 1, 1], float) / sum(weights or [1, 1, 1])
    hand = sum(wi * p for wi, p in zip(w, singles, strict=True))
    for method in ("slabs", "whole"):
        probs, labels = _predict(views, src, method, weights=weights)
        np.testing.assert_allclose(probs, hand, rtol=0, atol=1e-5)
        np.testing.assert_array_equal(labels, hand.argmax(0))
    assert len(np.unique(hand.argmax(0))) >= 2


def test_quicknat_preset_weights_views_0_4_0_4_0_2(make_ckpt, tmp_path: Path) -> None:
    src = save_image(tmp_path / "img.nii.gz", phantom(ODD), oblique_affine())
    names = {0: "sag.ckpt", 1: "cor.ckpt", 2: "ax.ckpt"}
    views = {a: make_ckpt(names[a], seed=a, mode="2d", slice_axis=a) for a in (0, 1, 2)}
    single = {a: _predict(v, src, "whole")[0] for a, v in views.items()}
    hand = 0.2 * single[0] + 0.4 * single[1] + 0.4 * single[2]
    order = [views[2], views[0], views[1]]
    predictor = Predictor(order, device="cpu", progress=False, weights="quicknat")
    assert predictor.weights == pytest.approx([0.4, 0.2, 0.4])
    probs, _ = predictor.predict_probabilities(src)
    np.testing.assert_allclose(probs, hand, rtol=0, atol=1e-5)
    labels, _ = predictor.predict_image(src)
    np.testing.assert_array_equal(labels, hand.argmax(0))


@pytest.mark.parametrize(
    "members",
    [
        [{"mode": "2d", "slice_axis": 1}, {"patch_size": [8, 10, 7]}],
        [{"mode": "2d", "slice_axis": 0}, {"mode": "2d", "slice_axis": 2}, {}],
        [{"mode": "2d", "slice_axis": 1}, {"patch_size": [8, 8, 8], "spacing": [1.3, 1.1, 1.7]}],
    ],
    ids=["2d+3d", "two-views+3d", "different-preprocessing"],
)
def test_mixed_ensembles_equal_hand_average(make_ckpt, tmp_path: Path, members) -> None:
    src = save_image(tmp_path / "img.nii.gz", phantom(ODD), _flipped_affine())
    ckpts = [make_ckpt(f"m{i}.ckpt", seed=i, **kw) for i, kw in enumerate(members)]
    weights = list(range(1, len(ckpts) + 1))
    singles = [_predict(c, src, "whole")[0] for c in ckpts]
    hand = sum(w * p for w, p in zip(weights, singles, strict=True)) / sum(weights)
    probs, labels = _predict(ckpts, src, "slabs", weights=weights)
    np.testing.assert_allclose(probs, hand, rtol=0, atol=1e-5)
    np.testing.assert_array_equal(labels, hand.argmax(0))


def test_over_budget_accumulator_uses_16_bit_fixed_point(make_ckpt, tmp_path, caplog) -> None:
    src = save_image(tmp_path / "img.nii.gz", phantom(ODD), oblique_affine())
    views = [make_ckpt(f"v{a}.ckpt", seed=a, mode="2d", slice_axis=a) for a in range(3)]
    exact, _ = _predict(views, src, "slabs")
    with caplog.at_level(logging.WARNING):
        _, labels = _predict(views, src, "slabs", max_memory=1e-6)
    assert "16-bit fixed point" in caplog.text
    agree = float((labels == exact.argmax(0)).mean())
    assert agree > 0.99  # only near-ties (|p_i - p_j| < ~1e-4) may flip


@pytest.mark.parametrize(
    "intensity",
    [
        {"kind": "zscore", "nonzero": False},
        {"kind": "zscore", "nonzero": True},
        {"kind": "ct", "window": [-20.0, 60.0]},
        {"kind": "none"},
    ],
)
@pytest.mark.parametrize("spacing", [None, [1.3, 1.1, 1.7]])
def test_lean_preprocessing_is_bit_identical(tmp_path: Path, intensity, spacing) -> None:
    src = save_image(tmp_path / "img.nii.gz", phantom(ODD), _flipped_affine())
    chain = preprocess_transforms(
        {"orientation": "RAS", "spacing": spacing, "intensity": intensity}, keys=("image",)
    )
    expected = chain({"image": str(src)})["image"]
    got = run_preprocessing(chain, [src])["image"]
    assert torch.equal(got.as_tensor(), expected.as_tensor())
    np.testing.assert_array_equal(np.asarray(got.affine), np.asarray(expected.affine))
    assert [op["class"] for op in got.applied_operations] == [
        op["class"] for op in expected.applied_operations
    ]


def test_nan_in_the_last_slice_is_found(make_ckpt, tmp_path: Path) -> None:
    from segattn.errors import InputFileError

    data = phantom(ODD)
    data[-1, -1, -1] = np.nan
    src = save_image(tmp_path / "nan.nii.gz", data)
    with pytest.raises(InputFileError, match="NaN or infinite"):
        Predictor(make_ckpt(), device="cpu", progress=False).predict_image(src)


def test_bad_memory_and_method_arguments(make_ckpt) -> None:
    with pytest.raises(ValueError, match="max_memory"):
        Predictor(make_ckpt(), max_memory=0)
    with pytest.raises(ValueError, match="method"):
        Predictor(make_ckpt(), method="tiles")
