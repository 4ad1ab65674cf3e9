"""``segattn explain`` through its entry function: gates on the scan's grid and header, errors."""

from __future__ import annotations

import csv
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
from segattn.data.transforms import plain_tensor, preprocess_transforms  # noqa: E402
from segattn.inference import Predictor  # noqa: E402
from segattn.inference.preprocess import run_preprocessing  # noqa: E402
from segattn.inspect import capture_attention  # noqa: E402


def _ckpt(tmp_path: Path, name: str = "model.ckpt", **kwargs: object) -> Path:
    meta = checkpoint_meta(**kwargs)  # type: ignore[arg-type]
    meta["net"]["kwargs"]["attention"] = "scse"
    return save_checkpoint(tmp_path / name, meta)


def _explain(*args: str | Path) -> int:
    return main(["explain", *[str(a) for a in args], "--device", "cpu"])


@pytest.fixture
def scan(tmp_path: Path) -> Path:
    folder = tmp_path / "imagesTs"
    folder.mkdir()
    return save_image(folder / "case_0000.nii.gz", phantom(), oblique_affine())


@pytest.mark.parametrize(
    "options",
    [
        {"mode": "3d", "spacing": [1.5, 1.5, 1.5]},
        {"mode": "2d", "slice_axis": 1, "orientation": "LPS"},
    ],
    ids=["3d-resampled", "2d-coronal"],
)
def test_gates_are_written_on_the_scans_grid_with_its_header(
    tmp_path: Path, scan: Path, options: dict, capsys
) -> None:
    ckpt = _ckpt(tmp_path, **options)
    out = tmp_path / "explain"
    assert _explain("--model", ckpt, "--input", scan.parent, "--output", out) == 0
    assert "explained 1 case(s)" in capsys.readouterr().out
    case = out / "case"
    ref = nib.load(scan)
    blocks = list(Predictor(ckpt, device="cpu").models[0].net.attention_modules())
    gates = sorted(case.glob("gate_*.nii.gz"))
    assert [g.name for g in gates] == sorted(f"gate_{b}.nii.gz" for b in blocks)
    for path in gates:
        img = nib.load(path)
        assert img.shape == ref.shape
        np.testing.assert_allclose(img.affine, ref.affine, atol=1e-5)
        np.testing.assert_allclose(img.header.get_zooms(), ref.header.get_zooms(), atol=1e-6)
        assert int(img.header["qform_code"]) == int(ref.header["qform_code"])
        assert int(img.header["sform_code"]) == int(ref.header["sform_code"])
        np.testing.assert_allclose(img.header.get_sform(), ref.header.get_sform(), atol=1e-5)
        data = np.asanyarray(img.dataobj)
        assert data.dtype == np.float32
        assert 0.0 <= data.min() < data.max() <= 1.0  # an sSE gate varies over the scan
    predicted, _ = Predictor(ckpt, device="cpu", progress=False).predict_image(scan)
    np.testing.assert_array_equal(nib.load(case / "prediction.nii.gz").get_fdata(), predicted)
    with open(case / "channel_gates.csv") as f:
        rows = list(csv.DictReader(f))
    widths = [4, 8, 4]  # features [4, 8]: encoder 4, bottleneck 8, decoder 4
    assert [r["block"] for r in rows] == [b for b, w in zip(blocks, widths) for _ in range(w)]
    assert all(0.0 < float(r["gate"]) < 1.0 and r["name"] == "scse" for r in rows)
    assert (case / "montage.png").stat().st_size > 10_000


def test_gate_on_the_scan_grid_is_the_reoriented_block_gate(tmp_path: Path) -> None:
    """Scan stored LPS, model trained RAS: the written map is the capture flipped back."""
    data = phantom()
    scan = save_image(tmp_path / "lps_0000.nii.gz", data, np.diag([-1.0, -1.0, 1.0, 1.0]))
    ckpt = _ckpt(tmp_path, mode="3d", orientation="RAS")
    out = tmp_path / "explain"
    net = Predictor(ckpt, device="cpu").models[0].net
    first = next(iter(net.attention_modules()))  # the full-resolution encoder block
    assert _explain("--model", ckpt, "--input", scan, "--output", out, "--blocks", first) == 0
    assert [p.name for p in (out / "lps").glob("gate_*")] == [f"gate_{first}.nii.gz"]
    written = nib.load(out / "lps" / f"gate_{first}.nii.gz").get_fdata()
    # normalised volume in storage order (no orientation step), flipped to RAS by hand
    meta = checkpoint_meta(mode="3d", orientation=None)
    volume = plain_tensor(
        run_preprocessing(preprocess_transforms(meta["preprocessing"], ("image",)), [scan])["image"]
    ).float()
    ras = torch.flip(volume, dims=(1, 2))
    [record] = capture_attention(net, ras[None], blocks=[first])
    assert record.spatial is not None
    expected = torch.flip(record.spatial[0, 0, : SHAPE[0], : SHAPE[1], : SHAPE[2]], dims=(0, 1))
    np.testing.assert_allclose(written, expected.numpy(), atol=1e-5)


def test_errors_are_one_line_and_other_cases_finish(tmp_path: Path, scan: Path, capsys) -> None:
    ckpt = _ckpt(tmp_path)
    out = tmp_path / "explain"
    bad = save_image(tmp_path / "two_0000.nii.gz", phantom((*SHAPE, 2)), np.eye(4))
    code = _explain(
        "--model",
        ckpt,
        "--input",
        scan,
        bad,
        tmp_path / "missing.nii.gz",
        "--output",
        out,
        "--no-montage",
    )
    captured = capsys.readouterr()
    assert code == 1
    errors = captured.err.strip().splitlines()
    assert len(errors) == 2 and "Traceback" not in captured.err
    assert any("missing.nii.gz" in e and "no such file" in e for e in errors)
    assert any("two_0000.nii.gz" in e and "channel" in e for e in errors)
    assert (out / "case" / "channel_gates.csv").exists() and not (out / "two").exists()
    assert not (out / "case" / "montage.png").exists()
    # a second run refuses to overwrite; an unknown block is a usage error (exit 2)
    assert _explain("--model", ckpt, "--input", scan, "--output", out) == 1
    assert "already exists" in capsys.readouterr().err
    assert _explain("--model", ckpt, "--input", scan, "--output", out, "--blocks", "nope") == 2
    assert "unknown block" in capsys.readouterr().err
