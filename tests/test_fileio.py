from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from segattn.fileio import atomic_path, copy_atomic, save_nifti_atomic, write_text_atomic


def test_atomic_path_cleans_up_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "CASE.nii.gz"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".")
        assert tmp.name.endswith("CASE.nii.gz")
        tmp.write_bytes(b"partial")
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    with atomic_path(target) as tmp:
        tmp.write_bytes(b"done")
    assert [p.name for p in tmp_path.iterdir()] == ["CASE.nii.gz"]


def test_writers_leave_only_the_target(tmp_path: Path) -> None:
    write_text_atomic(tmp_path / "a.json", "{}\n")
    save_nifti_atomic(
        nib.Nifti1Image(np.ones((2, 3, 4), np.uint8), np.eye(4)), tmp_path / "b.nii.gz"
    )
    copy_atomic(tmp_path / "a.json", tmp_path / "c.json")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "b.nii.gz", "c.json"]
    assert (tmp_path / "c.json").read_text() == "{}\n"
    assert nib.load(str(tmp_path / "b.nii.gz")).shape == (2, 3, 4)
