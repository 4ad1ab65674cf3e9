"""``segattn ablate`` end to end on a 2x2 grid: outputs, rerun, changed grid, report from the
CSVs alone, SLURM dry run, a killed run that resumes to the same cases.csv, a failing cell."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from ablation_helpers import AXES, TINY, ablate, write_grid

CELLS = [
    "attention=none__seed_everything=0",
    "attention=none__seed_everything=1",
    "attention=cse__seed_everything=0",
    "attention=cse__seed_everything=1",
]


def test_grid_runs_end_to_end(finished_grid: Path, ablation_data: Path) -> None:
    out = finished_grid
    assert sorted(p.name for p in (out / "cells").iterdir()) == sorted(CELLS)
    cases = pd.read_csv(out / "cases.csv", dtype=str, keep_default_na=False)
    assert list(cases.columns) == [
        "model.attention",
        "seed_everything",
        "case",
        "structure",
        "dice",
        "hd95",
        "nsd",
    ]
    labels = json.loads((ablation_data / "dataset.json").read_text())["labels"]
    assert len(cases) == 4 * 3 * (len(labels) - 1)  # cells x test cases x structures
    assert set(cases["case"]) == {"malc_005", "malc_006", "malc_007"}
    assert set(cases["model.attention"]) == {"none", "cse"}
    runs = pd.read_csv(out / "runs.csv", dtype={"cell": str})
    assert list(runs["cell"]) == CELLS and set(runs["status"]) == {"done"}
    assert (runs["epochs"] == 1).all() and (runs["steps"] == 2).all()
    assert (runs["n_parameters"].iloc[2] > runs["n_parameters"].iloc[0]).all()  # cse adds MLPs
    for column in ("train_seconds", "seconds_per_step", "peak_memory_mb", "best_val_dice"):
        assert (runs[column] > 0).all(), column
    # test_mean_dice is the mean over cases of the per-case mean over structures
    first = cases[(cases["model.attention"] == "none") & (cases["seed_everything"] == "0")]
    per_case = first.assign(dice=first["dice"].astype(float)).groupby("case")["dice"].mean()
    assert runs["test_mean_dice"].iloc[0] == pytest.approx(per_case.mean(), abs=1e-6)
    # each cell is a normal training run with its config and outputs in its own folder
    for name in CELLS:
        cell = out / "cells" / name
        saved = next(cell.glob("lightning_logs/version_0/config.yaml"))
        config = yaml.safe_load(saved.read_text())
        assert config["model"]["attention"] == (None if "none" in name else "cse")
        assert config["seed_everything"] == int(name[-1])
        assert config["trainer"]["max_epochs"] == 1
        assert (cell / "checkpoints" / "last.ckpt").is_file()
        assert sorted(p.name for p in (cell / "predictions").iterdir()) == [
            "labels.ctbl",
            "labels.itksnap.txt",
            "malc_005.nii.gz",
            "malc_006.nii.gz",
            "malc_007.nii.gz",
        ]
    assert not any((out.parent / "cwd").iterdir())
    summary = pd.read_csv(out / "summary.csv", keep_default_na=False)
    assert set(summary["configuration"]) == {"attention=none", "attention=cse"}
    assert (summary["n_seeds"] == 2).all()
    md = (out / "summary.md").read_text()
    assert "| attention=cse | attention=none | 3 |" in md
    for figure in ("boxplots", "delta_dice_heatmap", "dice_vs_parameters", "dice_vs_step_time"):
        assert (out / "figures" / f"{figure}.png").stat().st_size > 1000


def test_rerun_does_nothing(finished_grid: Path, capsys) -> None:
    out = finished_grid
    before = {p: p.stat().st_mtime_ns for p in (out / "cells").rglob("*") if p.is_file()}
    assert ablate(out.parent / "grid.yaml", out) == 0
    assert "0 ran, 4 already done, 0 failed" in capsys.readouterr().out
    after = {p: p.stat().st_mtime_ns for p in (out / "cells").rglob("*") if p.is_file()}
    assert after == before


def test_changed_grid_is_refused(finished_grid: Path, ablation_data: Path, capsys) -> None:
    out = finished_grid
    changed = write_grid(
        out.parent / "changed.yaml", ablation_data, overrides={**TINY, "data.batch_size": 2}
    )
    before = {p: p.stat().st_mtime_ns for p in (out / "cells").rglob("*") if p.is_file()}
    grid_json = (out / "grid.json").read_text()
    assert ablate(changed, out) == 2
    assert "--force" in capsys.readouterr().err
    more = write_grid(
        out.parent / "more.yaml", ablation_data, axes={**AXES, "seed_everything": [0, 1, 2]}
    )
    assert ablate(more, out, "--dry-run") == 2
    assert "2 cell(s) added" in capsys.readouterr().err
    after = {p: p.stat().st_mtime_ns for p in (out / "cells").rglob("*") if p.is_file()}
    assert after == before and (out / "grid.json").read_text() == grid_json


def test_report_from_csvs_alone(finished_grid: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in ("grid.json", "cases.csv", "runs.csv"):
        shutil.copy(finished_grid / name, copy / name)
    from segattn.cli.main import main

    assert main(["ablate", "--report", str(copy)]) == 0
    for name in ("summary.csv", "stats.csv", "summary.md"):
        assert (copy / name).read_text() == (finished_grid / name).read_text(), name
    assert sorted(p.name for p in (copy / "figures").iterdir()) == sorted(
        p.name for p in (finished_grid / "figures").iterdir()
    )


def test_slurm_dry_run_writes_one_script_per_cell(
    ablation_data: Path, tmp_path: Path, capsys
) -> None:
    grid = write_grid(tmp_path / "grid.yaml", ablation_data)
    out = tmp_path / "out"
    argv = ["--launcher", "slurm", "--dry-run", "--partition", "gpu", "--time", "90"]
    assert ablate(grid, out, *argv, "--devices-per-job", "1") == 0
    scripts = sorted((out / "slurm").glob("*.sbatch"))
    assert [p.stem for p in scripts] == sorted(CELLS)
    for script in scripts:
        text = script.read_text()
        assert text.startswith("#!/bin/bash")
        assert "#SBATCH --partition=gpu" in text and "#SBATCH --time=90" in text
        assert "#SBATCH --gpus-per-node=1" in text
        assert f"-m segattn.ablation.cell {(out / 'cells' / script.stem).resolve()}" in text
        # the cell folder is ready for the job: its full training config is there
        assert (out / "cells" / script.stem / "train_config.yaml").is_file()
    assert not any((out / "cells").rglob("done"))


def test_killed_run_resumes_to_the_same_cases(
    finished_grid: Path, ablation_data: Path, tmp_path: Path
) -> None:
    # the half of the 2x2 grid without attention: same cells (same digests) as the finished grid
    axes = {"model.attention": [None], "seed_everything": [0, 1]}
    grid = write_grid(tmp_path / "grid.yaml", ablation_data, axes=axes)
    out = tmp_path / "out"
    code = "import sys; from segattn.cli.main import main; sys.exit(main(sys.argv[1:]))"
    argv = ["ablate", "--config", str(grid), "--out", str(out), "--threads-per-job", "1"]
    proc = subprocess.Popen(
        [sys.executable, "-c", code, *argv],
        env=dict(os.environ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 600
    while not list((out / "cells").glob("*/done")) and proc.poll() is None:
        assert time.monotonic() < deadline, "the first cell never finished"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the runner and its cell process
    proc.wait()
    assert len(list((out / "cells").glob("*/done"))) == 1
    assert not (out / "cases.csv").exists()
    assert ablate(grid, out) == 0
    uninterrupted = (finished_grid / "cases.csv").read_text().splitlines(keepends=True)
    expected = [uninterrupted[0], *(ln for ln in uninterrupted[1:] if ln.startswith("none,"))]
    assert (out / "cases.csv").read_text() == "".join(expected)
    runs = pd.read_csv(out / "runs.csv")
    assert set(runs["status"]) == {"done"}


def test_failing_cell_is_reported_while_others_finish(
    ablation_data: Path, tmp_path: Path, capsys
) -> None:
    grid = write_grid(
        tmp_path / "grid.yaml",
        ablation_data,
        axes={"model.attention": ["nosuchmodule", "cse"], "seed_everything": [0]},
        baseline={"model.attention": "cse"},
    )
    out = tmp_path / "out"
    assert ablate(grid, out, "--jobs", "2") == 1  # exit code: the number of failed cells
    printed = capsys.readouterr().out
    assert "1 ran, 0 already done, 1 failed" in printed
    runs = pd.read_csv(out / "runs.csv", keep_default_na=False)
    failed = runs[runs["status"] == "failed"]
    assert list(failed["model.attention"]) == ["nosuchmodule"]
    assert "nosuchmodule" in failed["error"].iloc[0]
    assert list(runs.loc[runs["status"] == "done", "model.attention"]) == ["cse"]
    cases = pd.read_csv(out / "cases.csv", dtype=str)
    assert set(cases["model.attention"]) == {"cse"}
    assert "failed (model.attention" not in printed and "nosuchmodule" in printed
