"""Two nodes x one process launched by ``torchrun`` on localhost (gloo): train, validate with
every rank's Dice gathered, write one checkpoint."""

from __future__ import annotations

import csv
import os
import socket
import subprocess
import sys
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch

from segattn.training import SegDataModule, SegmentationSystem

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.slow
def test_torchrun_two_nodes(tiny_malc: Path, tmp_path: Path) -> None:
    port = _free_port()
    out = tmp_path / "run"
    train_args = [
        "train",
        "--config",
        str(CONFIGS / "unet2d_scse.yaml"),
        "--data.root",
        str(tiny_malc),
        "--data.cache_dir",
        str(tmp_path / "cache"),
        "--data.val_fraction",
        "0.4",  # two validation cases: one per rank
        "--trainer.default_root_dir",
        str(out),
        "--trainer.accelerator",
        "cpu",
        "--trainer.strategy",
        "ddp",
        "--trainer.devices",
        "1",
        "--trainer.num_nodes",
        "2",
        "--trainer.max_epochs",
        "1",
        "--trainer.limit_train_batches",
        "2",
        "--trainer.enable_progress_bar",
        "false",
        "--model.features",
        "[4, 8]",
    ]
    env = {**os.environ, "GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1"}
    nodes = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--nnodes",
                "2",
                "--nproc_per_node",
                "1",
                "--node_rank",
                str(rank),
                "--master_addr",
                "127.0.0.1",
                "--master_port",
                str(port),
                "-m",
                "segattn.cli.main",
                *train_args,
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for rank in (0, 1)
    ]
    for node in nodes:
        _, err = node.communicate(timeout=600)
        assert node.returncode == 0, err.decode()[-3000:]

    # one run folder, one last checkpoint, written by rank 0 only
    versions = sorted((out / "lightning_logs").iterdir())
    assert [v.name for v in versions] == ["version_0"]
    last = versions[0] / "checkpoints" / "last.ckpt"
    assert sorted(p.name for p in last.parent.iterdir() if p.name.startswith("last")) == [
        "last.ckpt"
    ]
    checkpoint = torch.load(last, map_location="cpu", weights_only=True)
    assert checkpoint["global_step"] == 2 and checkpoint["epoch"] == 0

    with open(versions[0] / "metrics.csv", newline="") as handle:
        logged = [float(r["val/mean_dice"]) for r in csv.DictReader(handle) if r["val/mean_dice"]]
    assert len(logged) == 1

    # the same weights validated in one process over both validation cases give the same Dice,
    # so the two-node value averaged both ranks' cases, not only rank 0's
    dm = SegDataModule(str(tiny_malc), val_fraction=0.4, cache_dir=str(tmp_path / "cache"))
    # the network the config trained (its attention positions among them)
    positions = checkpoint["hyper_parameters"]["attention_positions"]
    system = SegmentationSystem.for_data(dm, features=[4, 8], attention_positions=positions)
    system.load_state_dict(checkpoint["state_dict"])
    trainer = pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False)
    (single,) = trainer.validate(system, datamodule=dm, verbose=False)
    assert len(dm.val_cases) == 2
    assert logged[0] == pytest.approx(single["val/mean_dice"], abs=1e-6)
