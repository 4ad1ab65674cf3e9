"""``segattn predict`` through its entry function: outputs, exit codes, one-line errors."""

from __future__ import annotations

import gzip
import pathlib
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "inference"))
from inference_helpers import (  # noqa: E402
    SHAPE,
    checkpoint_meta,
    oblique_affine,
    phantom,
    save_checkpoint,
    save_image,
)

from segattn.cli.main import main  # noqa: E402
from segattn.imageio import IMAGE_ENDINGS, ITKSNAP_FILE, SLICER_FILE  # noqa: E402

IMAGE_LIST = ", ".join(IMAGE_ENDINGS)


@pytest.fixture
def ckpt(tmp_path: Path) -> Path:
    return save_checkpoint(tmp_path / "model.ckpt", checkpoint_meta())


@pytest.fixture
def good(tmp_path: Path) -> Path:
    folder = tmp_path / "imagesTs"
    folder.mkdir()
    save_image(folder / "good_0000.nii.gz", phantom(), oblique_affine())
    return folder / "good_0000.nii.gz"


def _predict(*args: str | Path) -> int:
    return main(["predict", *[str(a) for a in args], "--no-progress", "--device", "cpu"])


def _hidden(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.startswith(".")] if folder.exists() else []


def _label_maps(folder: Path) -> list[str]:
    """The files in ``folder`` except the two label-name files."""
    return sorted(p.name for p in folder.iterdir() if p.name not in (ITKSNAP_FILE, SLICER_FILE))


def test_predict_folder(ckpt: Path, good: Path, tmp_path: Path, capsys) -> None:
    save_image(good.parent / "other_0000.nii", phantom(seed=1), np.eye(4))
    out = tmp_path / "pred"
    assert _predict("--model", ckpt, "--input", good.parent, "--output", out) == 0
    captured = capsys.readouterr()
    assert _label_maps(out) == ["good.nii.gz", "other.nii"]
    assert (out / ITKSNAP_FILE).is_file() and (out / SLICER_FILE).is_file()
    assert "predicted 2 case(s)" in captured.out
    assert captured.err == ""
    assert nib.load(out / "good.nii.gz").shape == SHAPE


def _truncated(path: Path) -> None:
    save_image(path, phantom())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _not_nifti(path: Path) -> None:
    path.write_bytes(gzip.compress(b"just some text, not an image\n" * 40))


def _four_d(path: Path) -> None:
    save_image(path, phantom((*SHAPE, 2)))


def _nan(path: Path) -> None:
    data = phantom()
    data[3, 4, 5] = np.nan
    save_image(path, data)


def _inf(path: Path) -> None:
    data = phantom()
    data[0, 0, 0] = np.inf
    save_image(path, data)


@pytest.mark.parametrize(
    "make, problem",
    [
        (_truncated, "cannot read the image data"),
        (_not_nifti, "cannot read as NIfTI"),
        (_four_d, "image has 2 channel(s)"),
        (_nan, "NaN or infinite"),
        (_inf, "NaN or infinite"),
    ],
    ids=["truncated", "not-nifti", "4d", "nan", "inf"],
)
def test_bad_file_fails_alone(make, problem, ckpt: Path, good: Path, tmp_path: Path, capsys):  # type: ignore[no-untyped-def]
    bad = tmp_path / "bad_0000.nii.gz"
    make(bad)
    out = tmp_path / "pred"
    assert _predict("--model", ckpt, "--input", bad, good, "--output", out) == 1
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith(f"segattn: error: {bad}: ")
    assert problem in lines[0]
    assert "Traceback" not in captured.err
    assert _label_maps(out) == ["good.nii.gz"]  # nothing half-written
    assert "1 failed" in captured.out


def test_missing_path_and_empty_folder(ckpt: Path, good: Path, tmp_path: Path, capsys) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    out = tmp_path / "pred"
    code = _predict(
        "--model", ckpt, "--input", tmp_path / "nope.nii.gz", empty, good, "--output", out
    )
    assert code == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == [
        f"segattn: error: {tmp_path / 'nope.nii.gz'}: no such file or folder",
        f"segattn: error: {empty}: folder contains no image files ({IMAGE_LIST}) or DICOM series",
    ]
    assert _label_maps(out) == ["good.nii.gz"]


def test_existing_output_refused_before_computing(
    ckpt: Path, good: Path, tmp_path: Path, capsys, monkeypatch
) -> None:
    out = tmp_path / "pred"
    out.mkdir()
    (out / "good.nii.gz").write_bytes(b"keep me")
    from segattn.inference import Predictor

    def fail(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("computed although the output exists")

    monkeypatch.setattr(Predictor, "predict_image", fail)
    assert _predict("--model", ckpt, "--input", good, "--output", out) == 1
    err = capsys.readouterr().err.strip().splitlines()
    problem = "output already exists (use --overwrite to replace it)"
    assert err == [f"segattn: error: {out / 'good.nii.gz'}: {problem}"]
    assert (out / "good.nii.gz").read_bytes() == b"keep me"
    monkeypatch.undo()
    assert _predict("--model", ckpt, "--input", good, "--output", out, "--overwrite") == 0
    assert nib.load(out / "good.nii.gz").shape == SHAPE


def test_same_output_name_twice(ckpt: Path, good: Path, tmp_path: Path, capsys) -> None:
    other = tmp_path / "elsewhere"
    other.mkdir()
    save_image(other / "good.nii.gz", phantom())
    out = tmp_path / "pred"
    assert _predict("--model", ckpt, "--input", good, other, "--output", out) == 1
    err = capsys.readouterr().err
    assert err.count("output name good.nii.gz is also the output of") == 2
    assert not out.exists() or list(out.iterdir()) == []


def test_failed_write_leaves_no_temp_file(
    ckpt: Path, good: Path, tmp_path: Path, capsys, monkeypatch
) -> None:
    def broken_save(img, path):  # type: ignore[no-untyped-def]
        Path(path).write_bytes(b"half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(nib, "save", broken_save)
    out = tmp_path / "pred"
    assert _predict("--model", ckpt, "--input", good, "--output", out) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"segattn: error: {out / 'good.nii.gz'}: cannot write: No space left on device"]
    assert list(out.iterdir()) == []


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


@pytest.mark.parametrize("kind", ["text", "pickled", "no-meta", "missing"])
def test_bad_checkpoint_exits_2(kind: str, good: Path, tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.ckpt"
    marker = tmp_path / "marker"
    if kind == "text":
        bad.write_text("hello")
    elif kind == "pickled":
        torch.save({"segattn": _Payload(marker), "state_dict": {}}, bad)
    elif kind == "no-meta":
        torch.save({"state_dict": {"net.w": torch.zeros(1)}}, bad)
    out = tmp_path / "pred"
    assert _predict("--model", bad, "--input", good, "--output", out) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"segattn: error: {bad}: ")
    assert not marker.exists()
    assert not out.exists()


def test_two_models_are_ensembled(good: Path, tmp_path: Path, capsys) -> None:
    a = save_checkpoint(tmp_path / "a.ckpt", checkpoint_meta(mode="2d", slice_axis=0))
    b = save_checkpoint(tmp_path / "b.ckpt", checkpoint_meta(mode="2d", slice_axis=2), seed=1)
    out = tmp_path / "pred"
    assert _predict("--model", a, b, "--input", good, "--output", out) == 0
    assert nib.load(out / "good.nii.gz").shape == SHAPE


@pytest.mark.parametrize(
    "extra", [["--overlap", "1.5"], ["--sw-batch-size", "0"], ["--device", "tpu"]]
)
def test_usage_errors_exit_2(extra: list[str], ckpt: Path, good: Path, tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exc:
        main(
            [
                "predict",
                "--model",
                str(ckpt),
                "--input",
                str(good),
                "--output",
                str(tmp_path),
                *extra,
            ]
        )
    assert exc.value.code == 2


def _views(tmp_path: Path) -> list[Path]:
    return [
        save_checkpoint(tmp_path / f"{name}.ckpt", checkpoint_meta(mode="2d", slice_axis=a), a)
        for a, name in enumerate(("sag", "cor", "ax"))
    ]


def test_weights_and_presets_are_applied(good: Path, tmp_path: Path, capsys) -> None:
    from segattn.inference import Predictor

    views = _views(tmp_path)
    expected = {}
    for name, weights in (("equal", None), ("given", [1.0, 2.0, 7.0]), ("quicknat", "quicknat")):
        labels, _ = Predictor(views, device="cpu", progress=False, weights=weights).predict_image(
            good
        )
        expected[name] = labels
    for name, extra in (("given", ["1", "2", "7"]), ("quicknat", ["quicknat"])):
        out = tmp_path / f"pred_{name}"
        args = ["--model", *views, "--input", good, "--output", out, "--weights", *extra]
        assert _predict(*args) == 0, capsys.readouterr().err
        written = np.asanyarray(nib.load(out / "good.nii.gz").dataobj)
        np.testing.assert_array_equal(written, expected[name])
    assert not np.array_equal(expected["given"], expected["equal"])  # the weights matter


@pytest.mark.parametrize(
    "weights, problem",
    [
        (["1", "2"], "2 weight(s) given for 3 model(s); give one per model"),
        (["1", "0", "2"], "weights must be positive numbers"),
        (["fastnat"], "--weights takes one number per model or a preset (quicknat), got 'fastnat'"),
    ],
)
def test_bad_weights_exit_2_with_one_line(
    weights, problem, good: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "pred"
    args = ["--model", *_views(tmp_path), "--input", good, "--output", out, "--weights", *weights]
    assert _predict(*args) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and problem in lines[0], captured.err
    assert "Traceback" not in captured.err
    assert not out.exists()


def test_quicknat_preset_with_a_3d_model_exits_2(
    ckpt: Path, good: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    views = _views(tmp_path)[:2]
    args = ["--model", *views, ckpt, "--input", good, "--output", tmp_path / "pred"]
    assert _predict(*args, "--weights", "quicknat") == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == [
        f"segattn: error: {ckpt}: is a 3D model; the 'quicknat' weights need 2D models of "
        "distinct views"
    ]


@pytest.mark.parametrize(
    "meta, problem",
    [
        (
            {"labels": {"background": 0, "liver": 1, "right": 2}},
            "labels differ from {first} (class 1: 'liver' vs 'left'); cannot ensemble them",
        ),
        ({"in_channels": 2}, "takes 2 channel(s) but {first} takes 1; cannot ensemble them"),
    ],
    ids=["labels", "channels"],
)
def test_incompatible_models_exit_2_naming_both(
    meta, problem, ckpt: Path, good: Path, tmp_path: Path, capsys
) -> None:
    other = save_checkpoint(tmp_path / "other.ckpt", checkpoint_meta(**meta))
    out = tmp_path / "pred"
    assert _predict("--model", ckpt, other, "--input", good, "--output", out) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == [f"segattn: error: {other}: " + problem.format(first=ckpt)]
    assert not out.exists()


def test_whole_volume_and_memory_budget_give_the_same_labels(
    good: Path, tmp_path: Path, capsys
) -> None:
    ckpt = save_checkpoint(tmp_path / "w.ckpt", checkpoint_meta(patch_size=[8, 10, 6]))
    outputs = {}
    for name, extra in (
        ("whole", ["--whole-volume"]),
        ("slabs", []),
        ("blocks", ["--max-memory", "0.00003"]),
    ):
        out = tmp_path / name
        assert _predict("--model", ckpt, "--input", good, "--output", out, *extra) == 0
        outputs[name] = np.asanyarray(nib.load(out / "good.nii.gz").dataobj)
    np.testing.assert_array_equal(outputs["slabs"], outputs["whole"])
    np.testing.assert_array_equal(outputs["blocks"], outputs["whole"])
    args = ["predict", "--model", str(ckpt), "--input", str(good), "--output", "x"]
    with pytest.raises(SystemExit) as exc:
        main([*args, "--max-memory", "0"])
    assert exc.value.code == 2
