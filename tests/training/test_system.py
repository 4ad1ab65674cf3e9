from __future__ import annotations

import math
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from segattn.training import SegDataModule, SegmentationSystem


def _fit(root: Path, out: Path, mode: str, seed: int = 0, **system_kwargs) -> tuple:
    pl.seed_everything(seed, workers=True, verbose=False)
    kwargs = {"patch_size": [16, 16, 16], "samples_per_volume": 2} if mode == "3d" else {}
    dm = SegDataModule(str(root), mode=mode, batch_size=4, seed=seed, **kwargs)
    system = SegmentationSystem.for_data(dm, features=[4, 8], **system_kwargs)
    ckpt = ModelCheckpoint(dirpath=out, monitor="val/mean_dice", mode="max", save_last=True)
    trainer = pl.Trainer(
        accelerator="cpu",
        max_epochs=1,
        limit_train_batches=3,
        callbacks=[ckpt],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        deterministic=True,
    )
    trainer.fit(system, datamodule=dm)
    return system, trainer, ckpt


@pytest.mark.parametrize("mode", ["2d", "3d"])
def test_training_smoke_logs_dice_per_structure(tiny_malc: Path, tmp_path: Path, mode: str) -> None:
    system, trainer, ckpt = _fit(tiny_malc, tmp_path, mode)
    metrics = trainer.callback_metrics
    assert "val/mean_dice" in metrics and "val/loss" in metrics
    assert 0.0 <= float(metrics["val/mean_dice"]) <= 1.0
    names = [k.split("/")[-1] for k in metrics if k.startswith("val/dice/")]
    assert names and set(names) <= set(system.label_names[1:])
    assert math.isfinite(float(metrics["train/loss_epoch"]))
    # the checkpoint loads without unpickling anything and carries what inference needs
    ck = torch.load(ckpt.best_model_path, map_location="cpu", weights_only=True)
    meta = ck["segattn"]
    assert meta["mode"] == mode
    assert meta["net"]["kwargs"]["spatial_dims"] == (2 if mode == "2d" else 3)
    assert list(meta["labels"]) == system.label_names
    assert meta["preprocessing"]["orientation"] == "RAS"
    assert any(k.startswith("net.") for k in ck["state_dict"])
    assert Path(ckpt.last_model_path).exists()


def test_seeded_training_is_reproducible(tiny_malc: Path, tmp_path: Path) -> None:
    a, _, _ = _fit(tiny_malc, tmp_path / "a", "2d", seed=5)
    b, _, _ = _fit(tiny_malc, tmp_path / "b", "2d", seed=5)
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb
        assert torch.equal(va, vb), ka


def test_deep_supervision_and_plain_ce_train(tiny_malc: Path, tmp_path: Path) -> None:
    system, trainer, _ = _fit(tiny_malc, tmp_path, "2d", deep_supervision=True, loss="ce")
    assert math.isfinite(float(trainer.callback_metrics["train/loss_epoch"]))
    # inference rebuilds the net without deep-supervision heads
    assert system.inference_meta()["net"]["kwargs"]["deep_supervision"] is False


def test_batch_size_one_trains_in_3d(tiny_malc: Path) -> None:
    system = SegmentationSystem(spatial_dims=3, num_classes=3, features=[4, 8], norm="batch")
    batch = {"image": torch.randn(1, 1, 9, 11, 13), "label": torch.randint(0, 3, (1, 1, 9, 11, 13))}
    loss = system._loss(system.net(batch["image"]), batch["label"])
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in system.parameters() if p.grad is not None)


def test_bad_loss_name() -> None:
    with pytest.raises(ValueError, match="loss"):
        SegmentationSystem(loss="focal")  # type: ignore[arg-type]
