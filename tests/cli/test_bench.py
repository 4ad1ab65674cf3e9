"""``segattn bench predict-memory`` on a tiny case: both methods, their ratio, exit 0."""

from __future__ import annotations

import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from segattn.cli.bench import write_random_checkpoint, write_synthetic_ct
from segattn.cli.main import main
from segattn.inference.checkpoint import load_checkpoint


@pytest.mark.slow  # two Python subprocesses importing torch and MONAI
def test_predict_memory_tiny(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["bench", "predict-memory", "--shape", "24", "20", "14", "--classes", "3"]
    args += ["--features", "4", "8", "--patch", "8", "8", "8", "--threads", "1"]
    args += ["--workdir", str(tmp_path)]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "synthetic int16 CT 24x20x14" in out
    assert "3D UNet features (4, 8), patch 8x8x8" in out
    rows = {
        m: re.search(rf"^{m}\s+([\d.]+) GB .* ([\d.]+) s$", out, re.M) for m in ("slabs", "whole")
    }
    assert all(rows.values()), out
    ratio = re.search(
        r"^ratio: peak memory whole/slabs = ([\d.]+)x; time slabs/whole = ([\d.]+)x$", out, re.M
    )
    assert ratio is not None, out
    assert "labels identical: 100.0000% of voxels" in out


def test_synthetic_inputs(tmp_path: Path) -> None:
    write_synthetic_ct(tmp_path / "ct.nii", (10, 12, 5))
    img = nib.load(tmp_path / "ct.nii")
    data = np.asanyarray(img.dataobj)
    assert img.get_data_dtype() == np.int16 and data.shape == (10, 12, 5)
    assert nib.aff2axcodes(img.affine) == ("L", "P", "S")  # stored LPS: orientation flips
    assert data.min() < -900 and data.max() > 0  # air and tissue
    write_random_checkpoint(tmp_path / "m.ckpt", 5, (4, 8), (8, 8, 8))
    info = load_checkpoint(tmp_path / "m.ckpt")
    assert info.num_classes == 5 and info.mode == "3d" and info.patch_size == (8, 8, 8)
    info.build_net()


def test_bad_sizes_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "predict-memory", "--classes", "1"]) == 2
    assert "--classes >= 2" in capsys.readouterr().err
