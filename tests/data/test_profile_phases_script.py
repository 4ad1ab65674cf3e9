"""Tests for data_scripts/profile_phases.py on a report in Lightning's simple profiler format."""

from __future__ import annotations

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "data_scripts" / "profile_phases.py"


def _row(action: str, calls: str, total: str) -> str:
    """One table row as Lightning's SimpleProfiler writes it: padded cells, tab before "|"."""
    cells = [action.ljust(60), "0.1".ljust(15), calls.ljust(15), total.ljust(15), "1.0".ljust(15)]
    return "|  " + "\t|  ".join(cells) + "\t|"


REPORT = "\n".join(
    [
        "FIT Profiler Report",
        "",
        _row("Action", "Num calls", "Total time (s)"),
        _row("Total", "900", "30.0"),
        _row("run_training_epoch", "2", "28.0"),
        _row("[LightningModule]SegmentationSystem.optimizer_step", "40", "20.0"),
        _row("[Strategy]SingleDeviceStrategy.backward", "40", "12.0"),
        _row("[Strategy]SingleDeviceStrategy.training_step", "40", "6.0"),
        _row("[_TrainingEpochLoop].train_dataloader_next", "40", "4.0"),
        _row("[Strategy]SingleDeviceStrategy.validation_step", "3", "3.0"),
        _row("[_EvaluationLoop].val_next", "3", "0.3"),
        _row("save_checkpoint", "4", "8e-01"),
    ]
)


def _module():
    spec = importlib.util.spec_from_file_location("profile_phases", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_phases_from_report(tmp_path, capsys):
    module = _module()
    rows = module.parse_report(REPORT)
    assert rows["run_training_epoch"] == (2, 28.0)
    table = dict(module.phases(rows))
    # the update is optimizer_step minus the forward and backward it wraps: 20 - 6 - 12
    assert table == {
        "loading + augmentation": 4.0,
        "forward + loss": 6.0,
        "backward": 12.0,
        "optimiser update": 2.0,
        "validation (whole volumes)": 3.0,
        "validation loading": 0.3,
        "checkpointing": 0.8,
    }
    log = tmp_path / "run.log"
    log.write_text("training output\n" + REPORT)
    assert module.main([str(log)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "2 epochs, 40 training steps, 3 validation volumes"
    assert "| backward | 12.0 | 6.00 | 43% |" in out  # 12 of 28.1
    assert out[-1] == "| sum | 28.1 | 14.05 | 100% |"


def test_no_report(tmp_path, capsys):
    log = tmp_path / "empty.log"
    log.write_text("no profiler here\n")
    assert _module().main([str(log)]) == 1
    assert "no profiler report" in capsys.readouterr().err
