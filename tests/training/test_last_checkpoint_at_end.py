"""A run that ends between two validations still leaves its final step in ``last.ckpt``."""

from __future__ import annotations

from pathlib import Path

import torch

from segattn.cli.main import main

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def test_last_checkpoint_holds_the_final_step(tiny_malc: Path, tmp_path: Path) -> None:
    path = CONFIGS / "unet2d_scse.yaml"
    out = tmp_path / "run"
    status = main(
        [
            "train",
            "--config",
            str(path),
            "--data.root",
            str(tiny_malc),
            "--data.cache_dir",
            str(tmp_path / "cache"),
            "--data.num_workers",
            "0",
            "--trainer.default_root_dir",
            str(out),
            "--trainer.max_epochs",
            "3",
            "--trainer.max_steps",
            "5",
            "--trainer.check_val_every_n_epoch",
            "2",
            "--trainer.limit_train_batches",
            "2",
            "--trainer.enable_progress_bar",
            "false",
            "--model.features",
            "[4, 8]",
        ]
    )
    assert status == 0
    (folder,) = out.glob("lightning_logs/version_*/checkpoints")
    last = torch.load(folder / "last.ckpt", map_location="cpu", weights_only=True)
    # validation (and Lightning's own last.ckpt) after epoch 2 at step 4; training ended at 5,
    # in the middle of the last epoch, before its validation
    assert last["global_step"] == 5
    best = [p for p in folder.glob("best-*.ckpt")]
    assert len(best) == 1
    assert torch.load(best[0], map_location="cpu", weights_only=True)["global_step"] == 4
