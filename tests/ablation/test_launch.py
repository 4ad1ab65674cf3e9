"""How cells are launched: the worker command and each parallel slot's threads and GPUs."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from segattn.ablation.runner import slot_environment, worker_command


def test_worker_command(tmp_path: Path) -> None:
    cmd = worker_command(tmp_path / "cell", threads=3, devices=2)
    assert cmd == [
        sys.executable,
        "-m",
        "segattn.ablation.cell",
        str((tmp_path / "cell").resolve()),
        "--threads",
        "3",
        "--devices",
        "2",
    ]


def test_each_slot_gets_its_own_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,5,6,7")
    assert slot_environment(0, 2, 2)["CUDA_VISIBLE_DEVICES"] == "4,5"
    assert slot_environment(1, 2, 2)["CUDA_VISIBLE_DEVICES"] == "6,7"
    env = slot_environment(1, 3, None)
    assert env["OMP_NUM_THREADS"] == "3" and env["CUDA_VISIBLE_DEVICES"] == "4,5,6,7"
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert slot_environment(2, None, 1)["CUDA_VISIBLE_DEVICES"] == "2"
