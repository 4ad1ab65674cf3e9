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
    # written at the stopping batch, so it resumes in the cut epoch 2 after its first batch
    # (Lightning's own end-of-training state marks epoch 2 as finished)
    assert last["loops"]["fit_loop"]["state_dict"]["combined_loader"] == [
        {"epoch": 2, "batches": 1}
    ]
    best = [p for p in folder.glob("best-*.ckpt")]
    assert len(best) == 1
    assert torch.load(best[0], map_location="cpu", weights_only=True)["global_step"] == 4


def test_last_checkpoint_follows_every_epoch_when_the_dice_stalls(
    tiny_malc: Path, tmp_path: Path
) -> None:
    """At lr 0 the Dice never improves after the first validation, so Lightning saves neither a
    top-k checkpoint nor last.ckpt after it; last.ckpt must still hold the last epoch."""
    out = tmp_path / "run"
    args = ["train", "--config", str(CONFIGS / "unet2d_scse.yaml"), "--data.root", str(tiny_malc)]
    args += ["--data.cache_dir", str(tmp_path / "cache"), "--data.num_workers", "0"]
    args += ["--trainer.default_root_dir", str(out), "--trainer.max_epochs", "4"]
    args += ["--trainer.check_val_every_n_epoch", "1", "--trainer.limit_train_batches", "2"]
    args += ["--trainer.enable_progress_bar", "false", "--model.features", "[4, 8]"]
    args += ["--model.optimizer.init_args.lr", "0.0"]
    assert main(args) == 0
    (folder,) = out.glob("lightning_logs/version_*/checkpoints")
    assert sorted(p.name for p in folder.iterdir()) == ["best-epoch000.ckpt", "last.ckpt"]
    last = torch.load(folder / "last.ckpt", map_location="cpu", weights_only=True)
    assert (last["epoch"], last["global_step"]) == (3, 8)
