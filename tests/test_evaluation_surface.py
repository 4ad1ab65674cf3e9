"""HD95 and NSD in ``evaluate_folders`` and ``segattn evaluate``: millimetres from the label
header, one CSV column per metric, the empty and not-annotated cases."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from segattn.cli.main import main
from segattn.evaluation import evaluate_folders

LABELS = {"background": 0, "liver": 1, "spleen": 2, "tumour": 3}
SHAPE = (12, 9, 8)
SPACING = (2.0, 0.5, 1.5)
DIAGONAL = math.sqrt(sum((n * s) ** 2 for n, s in zip(SHAPE, SPACING)))


def _save(path: Path, labels: np.ndarray, spacing=SPACING) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # a rotated axis order in the affine: spacing must come from the column lengths
    affine = np.zeros((4, 4))
    affine[1, 0], affine[0, 1], affine[2, 2], affine[3, 3] = spacing[0], -spacing[1], spacing[2], 1
    nib.save(nib.Nifti1Image(labels.astype(np.uint8), affine), path)


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path]:
    """Case a: liver a 4^3 cube moved by one voxel along axis 0 (2 mm): HD95 2 mm, NSD at 1 mm
    = (36 + 4) * 2 / 112 (see tests/test_metrics.py); spleen only in the prediction; tumour
    absent from both. Case b: perfect liver; spleen only in the label; tumour not annotated."""
    pred, ref = tmp_path / "pred", tmp_path / "Dataset" / "labelsTs"
    a_ref = np.zeros(SHAPE, np.uint8)
    a_ref[2:6, 2:6, 2:6] = 1
    a_pred = np.roll(a_ref, 1, axis=0)
    a_pred[9:11, 7:9, 6:8] = 2
    _save(ref / "a.nii.gz", a_ref)
    _save(pred / "a.nii.gz", a_pred)
    b_ref = a_ref.copy()
    b_ref[9:11, 7:9, 6:8] = 2
    b_pred = a_ref.copy()
    b_pred[0, 0, 0] = 3
    _save(ref / "b.nii.gz", b_ref)
    _save(pred / "b.nii.gz", b_pred)
    meta = {"labels": LABELS, "missing_labels": {"b": ["tumour"]}}
    (tmp_path / "Dataset" / "dataset.json").write_text(json.dumps(meta))
    return pred, ref


def test_surface_metrics_in_millimetres(folders: tuple[Path, Path]) -> None:
    result = evaluate_folders(*folders, metrics=("dice", "hd95", "nsd"), nsd_tolerance=1.0)
    hd, nsd, dice = result.scores["hd95"], result.scores["nsd"], result.scores["dice"]
    assert result.per_case is dice and result.metrics == ("dice", "hd95", "nsd")
    assert hd["a"]["liver"] == pytest.approx(2.0)
    assert nsd["a"]["liver"] == pytest.approx(80 / 112)
    assert dice["a"]["liver"] == pytest.approx(2 * 48 / 128)
    # one side empty: Dice 0, NSD 0, HD95 the image diagonal in mm (both directions)
    for case in ("a", "b"):
        assert (dice[case]["spleen"], nsd[case]["spleen"]) == (0.0, 0.0)
        assert hd[case]["spleen"] == pytest.approx(DIAGONAL)
    # absent from both (a) or not annotated (b, although predicted): NaN for every metric
    for metric in ("dice", "hd95", "nsd"):
        assert math.isnan(result.scores[metric]["a"]["tumour"])
        assert math.isnan(result.scores[metric]["b"]["tumour"])
    assert (hd["b"]["liver"], nsd["b"]["liver"]) == (0.0, 1.0)
    assert result.summary("hd95")["liver"].mean == pytest.approx(1.0)
    assert result.mean("nsd") == pytest.approx(((80 / 112 + 1) / 2 + 0.0) / 2)


def test_tolerance_changes_only_nsd(folders: tuple[Path, Path]) -> None:
    wide = evaluate_folders(*folders, metrics=("nsd", "hd95"), nsd_tolerance=2.0)
    assert wide.scores["nsd"]["a"]["liver"] == pytest.approx(1.0)
    assert wide.scores["hd95"]["a"]["liver"] == pytest.approx(2.0)
    assert wide.metrics == ("nsd", "hd95")


def test_csv_has_one_column_per_metric(folders: tuple[Path, Path], tmp_path: Path) -> None:
    result = evaluate_folders(*folders, metrics=("dice", "nsd", "hd95"))
    out = tmp_path / "metrics.csv"
    result.write_csv(out)
    rows = list(csv.DictReader(out.open()))
    assert list(rows[0]) == ["case", "label", "dice", "nsd", "hd95", "annotated"]
    by_key = {(r["case"], r["label"]): r for r in rows}
    assert float(by_key["a", "liver"]["hd95"]) == pytest.approx(2.0)
    assert float(by_key["a", "spleen"]["hd95"]) == pytest.approx(DIAGONAL, abs=1e-6)
    assert by_key["b", "tumour"]["annotated"] == "no"
    assert [by_key["b", "tumour"][m] for m in ("dice", "nsd", "hd95")] == ["nan"] * 3


def test_bad_metric_arguments(folders: tuple[Path, Path]) -> None:
    with pytest.raises(ValueError, match="metrics"):
        evaluate_folders(*folders, metrics=("dice", "hd99"))
    with pytest.raises(ValueError, match="nsd_tolerance"):
        evaluate_folders(*folders, metrics=("nsd",), nsd_tolerance=-0.5)


def test_cli_metrics(folders: tuple[Path, Path], tmp_path: Path, capsys) -> None:
    pred, ref = folders
    out = tmp_path / "m.csv"
    argv = ["evaluate", "--pred", str(pred), "--labels", str(ref), "--csv", str(out)]
    assert main([*argv, "--metrics", "dice,hd95,nsd", "--nsd-tolerance", "2"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1].startswith("mean Dice: ")
    assert any(line.startswith("mean NSD at 2 mm: ") for line in lines)
    assert "HD95 (mm) mean ± std" in lines[0]
    assert out.read_text().splitlines()[0] == "case,label,dice,hd95,nsd,annotated"
    assert main([*argv, "--metrics", "dice,surface"]) == 2
    assert "--metrics dice,surface" in capsys.readouterr().err
