"""Resume after SIGKILL: the resumed run ends bit-identical to an uninterrupted one."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from segattn.cli.main import main

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
ENTRY = "import sys; from segattn.cli.main import main; sys.exit(main(sys.argv[1:]))"
# the same, with a callback that stops training after step STOP as ``max_time`` (Lightning's
# Timer) does: ``trainer.should_stop``, which also makes Lightning validate at that batch
STOP = 6  # in epoch 2 of 3, a validated one
ENTRY_STOP = f"""
import sys
import lightning.pytorch as pl
from segattn.cli.main import main
from segattn.training.cli import SegattnCLI

class Stop(pl.Callback):
    def on_train_batch_start(self, trainer, *args):
        trainer.should_stop = trainer.global_step == {STOP} - 1

fit = SegattnCLI.fit
def fit_with_stop(self, model, **kwargs):
    self.trainer.callbacks.insert(0, Stop())
    return fit(self, model, **kwargs)
SegattnCLI.fit = fit_with_stop
sys.exit(main(sys.argv[1:]))
"""


EPOCHS, STEPS_PER_EPOCH = 3, 4  # validated after epochs 1 and 2 (every 2nd, and the last)


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
        str(EPOCHS),
        "--trainer.limit_train_batches",
        str(STEPS_PER_EPOCH),
        "--trainer.log_every_n_steps",
        "1",
        "--trainer.enable_progress_bar",
        "false",
        "--model.features",
        "[4, 8]",
        *extra,
    ]


def _run(args: list[str], entry: str = ENTRY) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", entry, *args],
        env=dict(os.environ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _finish(proc: subprocess.Popen) -> None:
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err.decode()


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


@pytest.fixture(scope="module")
def uninterrupted(tiny_malc: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The run every interrupted one must reproduce (no step checkpoints, no workers)."""
    out = tmp_path_factory.mktemp("uninterrupted") / "run"
    _finish(_run(_args(tiny_malc, out, "--data.num_workers", "0")))
    return out


def _assert_same_end(
    full: Path, cut: Path, interrupted_at: int, steps: int = EPOCHS * STEPS_PER_EPOCH
) -> None:
    """The resumed run (``cut``'s ``version_1``) ends with the uninterrupted run's weights and
    optimiser state, and logged every value as it did."""
    a = torch.load(
        full / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt",
        map_location="cpu",
        weights_only=True,
    )
    b = torch.load(
        cut / "lightning_logs" / "version_1" / "checkpoints" / "last.ckpt",
        map_location="cpu",
        weights_only=True,
    )
    assert a["global_step"] == b["global_step"] == steps
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for name, tensor in a["state_dict"].items():
        assert torch.equal(tensor, b["state_dict"][name]), name
    for sa, sb in zip(
        a["optimizer_states"][0]["state"].values(), b["optimizer_states"][0]["state"].values()
    ):
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert a["lr_schedulers"] == b["lr_schedulers"]
    # the checkpoint was read: the resumed run logs from the step after the interruption on,
    # and every value it logs (train losses per step and per epoch, validation Dice) equals the
    # uninterrupted run's
    resumed_rows = _metrics(cut / "lightning_logs" / "version_1")
    steps = sorted(int(step) for _, step in resumed_rows)
    assert steps and steps[0] >= interrupted_at
    full_rows = _metrics(full)
    for key, values in resumed_rows.items():
        assert values == {k: full_rows[key][k] for k in values}, key
    assert any("val/mean_dice" in v for v in resumed_rows.values())


def _kill_when(
    proc: subprocess.Popen, checkpoint: Path, ready: Callable[[], bool], poll: float = 0.05
) -> int:
    """SIGKILL ``proc`` as soon as ``ready()`` (wherever the run happens to be then); returns
    the step ``checkpoint`` holds after the kill."""
    deadline = time.monotonic() + 300
    while not ready():
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        assert time.monotonic() < deadline
        time.sleep(poll)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return _global_step(checkpoint)


@pytest.mark.slow
def test_sigkill_mid_epoch_and_resume_is_bit_identical(
    tiny_malc: Path, uninterrupted: Path, tmp_path: Path
) -> None:
    cut_dir = tmp_path / "cut"
    cut = _run(_args(tiny_malc, cut_dir, "--checkpoint_every_n_steps", "1"))
    last = cut_dir / "lightning_logs" / "version_0" / "checkpoints" / "last-step.ckpt"
    killed_at = _kill_when(cut, last, lambda: _global_step(last) >= 3)
    assert 3 <= killed_at < EPOCHS * STEPS_PER_EPOCH, "killed before the end of training"
    # resume with a worker process: samples do not depend on who builds them
    args = _args(tiny_malc, cut_dir, "--checkpoint_every_n_steps", "1", "--data.num_workers", "1")
    _finish(_run([*args, "--ckpt_path", "last"]))
    _assert_same_end(uninterrupted, cut_dir, killed_at)


@pytest.mark.slow
def test_sigkill_after_an_unvalidated_epoch_and_resume_is_bit_identical(
    tiny_malc: Path, uninterrupted: Path, tmp_path: Path
) -> None:
    # no step checkpoints: the run resumes from the last.ckpt written at the end of epoch 0,
    # which the config does not validate, and with two workers, which fetch their first
    # batches before Lightning sets the epoch
    cut_dir = tmp_path / "cut"
    cut = _run(_args(tiny_malc, cut_dir, "--data.num_workers", "2"))
    last = cut_dir / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
    # the run's first last.ckpt is epoch 0's: kill as soon as it appears (its rename is atomic),
    # well before epoch 1's four steps and validation write the next one
    killed_at = _kill_when(cut, last, last.exists, poll=0.005)
    assert killed_at == STEPS_PER_EPOCH
    _finish(_run(_args(tiny_malc, cut_dir, "--data.num_workers", "2", "--ckpt_path", "last")))
    _assert_same_end(uninterrupted, cut_dir, killed_at)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("max_steps", "workers"),
    [
        pytest.param(3, 2, id="mid-epoch"),
        pytest.param(STEPS_PER_EPOCH, 2, id="unvalidated-epoch-end"),
        pytest.param(2 * STEPS_PER_EPOCH, 2, id="validated-epoch-end"),
        pytest.param(2 * STEPS_PER_EPOCH, 0, id="validated-epoch-end-no-workers"),
    ],
)
def test_max_steps_stop_and_resume_is_bit_identical(
    tiny_malc: Path, uninterrupted: Path, tmp_path: Path, max_steps: int, workers: int
) -> None:
    cut_dir = tmp_path / "cut"
    loader = ["--data.num_workers", str(workers)]
    _finish(_run(_args(tiny_malc, cut_dir, *loader, "--trainer.max_steps", str(max_steps))))
    last = cut_dir / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
    assert _global_step(last) == max_steps
    _finish(_run(_args(tiny_malc, cut_dir, *loader, "--ckpt_path", "last")))
    _assert_same_end(uninterrupted, cut_dir, max_steps)


@pytest.mark.slow
def test_early_stop_in_a_validated_epoch_and_resume_is_bit_identical(
    tiny_malc: Path, uninterrupted: Path, tmp_path: Path
) -> None:
    cut_dir = tmp_path / "cut"
    loader = ["--data.num_workers", "2"]
    _finish(_run(_args(tiny_malc, cut_dir, *loader), entry=ENTRY_STOP))
    folder = cut_dir / "lightning_logs" / "version_0" / "checkpoints"
    # Lightning validated at the stopping batch and saved its best checkpoint there, but
    # last.ckpt is the one written before that validation, which resumes into the epoch
    assert _global_step(folder / "last.ckpt") == STOP
    assert [_global_step(p) for p in folder.glob("best-*.ckpt")] == [STOP]
    _finish(_run(_args(tiny_malc, cut_dir, *loader, "--ckpt_path", "last")))
    _assert_same_end(uninterrupted, cut_dir, STOP)


@pytest.mark.slow
def test_max_time_stop_and_resume_is_bit_identical(tiny_malc: Path, tmp_path: Path) -> None:
    # 12 whole epochs (96 steps, a few seconds): a 1 s budget stops in one of them, wherever
    longer = ["--trainer.max_epochs", "12", "--trainer.limit_train_batches", "1.0"]
    longer += ["--data.num_workers", "2"]
    full_dir, cut_dir = tmp_path / "full", tmp_path / "cut"
    _finish(_run(_args(tiny_malc, full_dir, *longer)))
    _finish(_run(_args(tiny_malc, cut_dir, *longer, "--trainer.max_time", "00:00:00:01")))
    last = cut_dir / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
    stopped_at = _global_step(last)
    steps = _global_step(full_dir / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt")
    assert 0 < stopped_at < steps
    # max_time is the budget of the whole run, the resumed part included: resume without it
    _finish(_run([*_args(tiny_malc, cut_dir, *longer), "--ckpt_path", "last"]))
    _assert_same_end(full_dir, cut_dir, stopped_at, steps)


def test_ckpt_path_last_without_checkpoint_fails(tiny_malc: Path, tmp_path: Path, capsys) -> None:
    code = main(_args(tiny_malc, tmp_path / "run", "--ckpt_path", "last"))
    err = capsys.readouterr().err
    assert code != 0 and "Traceback" not in err
    last_line = err.strip().splitlines()[-1]
    assert last_line.startswith("segattn: error: --ckpt_path last: no last.ckpt in ")
    assert "nothing to resume" in last_line
