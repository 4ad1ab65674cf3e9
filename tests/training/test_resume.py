"""Resume after SIGKILL: the resumed run ends bit-identical to an uninterrupted one."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from segattn.cli.main import main

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
ENTRY = "import sys; from segattn.cli.main import main; sys.exit(main(sys.argv[1:]))"


def _args(root: Path, out: Path, *extra: str) -> list[str]:
    return [
        "train",
        "--config",
        str(CONFIGS / "unet2d_scse.yaml"),
        "--data.root",
        str(root),
        "--data.cache_dir",
        str(out.parent / "cache"),
        "--trainer.default_root_dir",
        str(out),
        "--trainer.max_epochs",
        "2",
        "--trainer.limit_train_batches",
        "4",
        "--trainer.log_every_n_steps",
        "1",
        "--trainer.enable_progress_bar",
        "false",
        "--model.features",
        "[4, 8]",
        "--checkpoint_every_n_steps",
        "1",
        *extra,
    ]


def _run(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", ENTRY, *args],
        env=dict(os.environ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _global_step(path: Path) -> int:
    try:
        return int(torch.load(path, map_location="cpu", weights_only=True)["global_step"])
    except (OSError, RuntimeError, EOFError, KeyError):
        return -1


def _metrics(run: Path) -> dict[tuple[str, str], dict[str, str]]:
    """(epoch, step) -> non-empty logged values, over every version folder of ``run``."""
    rows: dict[tuple[str, str], dict[str, str]] = {}
    for path in sorted(run.rglob("metrics.csv")):
        with open(path, newline="") as handle:
            for row in csv.DictReader(handle):
                key = (row["epoch"], row["step"])
                rows.setdefault(key, {}).update({k: v for k, v in row.items() if v})
    return rows


@pytest.mark.slow
def test_sigkill_and_resume_is_bit_identical(tiny_malc: Path, tmp_path: Path) -> None:
    full_dir, cut_dir = tmp_path / "full", tmp_path / "cut"
    full = _run(_args(tiny_malc, full_dir))
    cut = _run(_args(tiny_malc, cut_dir))
    last = cut_dir / "lightning_logs" / "version_0" / "checkpoints" / "last-step.ckpt"
    deadline = time.monotonic() + 300
    while _global_step(last) < 3:  # then kill wherever the run happens to be
        assert cut.poll() is None, cut.stderr.read().decode() if cut.stderr else ""
        assert time.monotonic() < deadline
        time.sleep(0.05)
    cut.send_signal(signal.SIGKILL)
    cut.wait()
    killed_at = _global_step(last)
    assert 3 <= killed_at < 8, "killed before the end of training"
    # resume with a worker process: samples do not depend on who builds them
    resumed = _run(_args(tiny_malc, cut_dir, "--ckpt_path", "last", "--data.num_workers", "1"))
    for proc in (full, resumed):
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err.decode()

    final_full = full_dir / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
    final_cut = cut_dir / "lightning_logs" / "version_1" / "checkpoints" / "last.ckpt"
    a = torch.load(final_full, map_location="cpu", weights_only=True)
    b = torch.load(final_cut, map_location="cpu", weights_only=True)
    assert a["global_step"] == b["global_step"] == 8
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for name, tensor in a["state_dict"].items():
        assert torch.equal(tensor, b["state_dict"][name]), name
    for sa, sb in zip(
        a["optimizer_states"][0]["state"].values(), b["optimizer_states"][0]["state"].values()
    ):
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
    # the checkpoint was read: the resumed run logs from the step after the kill on, and every
    # value it logs (train losses per step, validation Dice) equals the uninterrupted run's
    resumed_rows = _metrics(cut_dir / "lightning_logs" / "version_1")
    steps = sorted(int(step) for _, step in resumed_rows)
    assert steps and steps[0] >= killed_at
    full_rows = _metrics(full_dir)
    for key, values in resumed_rows.items():
        assert values == {k: full_rows[key][k] for k in values}, key
    assert any("val/mean_dice" in v for v in resumed_rows.values())


def test_ckpt_path_last_without_checkpoint_fails(tiny_malc: Path, tmp_path: Path, capsys) -> None:
    code = main(_args(tiny_malc, tmp_path / "run", "--ckpt_path", "last"))
    err = capsys.readouterr().err
    assert code != 0 and "Traceback" not in err
    last_line = err.strip().splitlines()[-1]
    assert last_line.startswith("segattn: error: --ckpt_path last: no last.ckpt in ")
    assert "nothing to resume" in last_line
