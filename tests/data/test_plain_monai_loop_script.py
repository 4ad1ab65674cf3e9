"""Tests for data_scripts/plain_monai_loop.py (the reference loop of the default 2D recipe)."""

from __future__ import annotations

import importlib.util
import math
import re
from pathlib import Path

from segattn.data.layout import load_dataset, split_cases
from segattn.data.phantoms import make_dataset

SCRIPT = Path(__file__).resolve().parents[2] / "data_scripts" / "plain_monai_loop.py"


def _main():
    spec = importlib.util.spec_from_file_location("plain_monai_loop", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def test_one_epoch_on_tiny_subjects(tmp_path, capsys):
    # size 48: 4.2 mm voxels, coronal slices 38 x 42, enough for BasicUNet's four poolings
    root = tmp_path / "mni"
    info = make_dataset("mni152", root, 3, size=48)
    assert _main()(["--data", str(root), "--epochs", "1", "--batch-size", "8"]) == 0
    out = capsys.readouterr().out
    train, held_out = split_cases(load_dataset(root).training, 0.2, 0)  # SegDataModule's split
    slices = sum(48 for _ in train)  # coronal = y axis, 48 voxels
    assert f"{len(train)} training cases, {slices} slices; {len(held_out)} held out" in out
    assert re.search(r"^epoch 1: loss \d+\.\d+", out, re.M)
    # per-case lines for exactly the held-out cases, then per-structure means and their mean
    cases = re.findall(r"^(mni152_\d{3}): ([\d.]+) ([\d.]+)$", out, re.M)
    assert [c[0] for c in cases] == [c.name for c in held_out]
    per_label = {name: float(v) for name, v in re.findall(r"^dice (\w+): ([\d.]+)$", out, re.M)}
    assert list(per_label) == info.label_names[1:]
    expected = [sum(float(c[k]) for c in cases) / len(cases) for k in (1, 2)]
    assert list(per_label.values()) == [round(e, 4) for e in expected]
    mean = float(re.search(r"^mean Dice: ([\d.]+)$", out, re.M).group(1))
    assert math.isclose(mean, sum(expected) / 2, abs_tol=1e-4)
    train_time = float(re.search(r"^training time: ([\d.]+) s$", out, re.M).group(1))
    wall = float(re.search(r"^wall time: ([\d.]+) s$", out, re.M).group(1))
    assert 0 < train_time <= wall
