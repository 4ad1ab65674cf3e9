"""The system builds any registered network by name, keeps the first release's U-Net options,
and trains with the paper's weighted loss using class weights from the training cases."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import nibabel as nib
import numpy as np
import pytest
import torch

from segattn.inference.checkpoint import CheckpointMeta, load_checkpoint
from segattn.nets import FCDenseNet, QuickNAT, UNet
from segattn.training import SegDataModule, SegmentationSystem
from segattn.training.losses import WeightedCEDiceLoss, median_frequency_weights


def test_net_is_chosen_by_name_and_recorded_in_the_metadata() -> None:
    system = SegmentationSystem(
        spatial_dims=2,
        num_classes=3,
        net="quicknat",
        net_kwargs={"features": 16, "depth": 2},
        attention="sse",
    )
    assert isinstance(system.net, QuickNAT)
    assert len(system.net.attention_modules()) == 5
    meta = CheckpointMeta.from_dict(system.inference_meta())
    assert meta.net_name == "quicknat"
    assert meta.net_kwargs["features"] == 16 and meta.net_kwargs["attention"] == "sse"
    rebuilt = meta.build_network()
    rebuilt.load_state_dict(system.net.state_dict())
    system = SegmentationSystem(
        spatial_dims=3, num_classes=2, net="fcdensenet", net_kwargs={"preset": "fcdensenet56"}
    )
    assert isinstance(system.net, FCDenseNet) and system.net.growth_rate == 12


def test_unet_options_at_the_top_level_still_work() -> None:
    old = SegmentationSystem(spatial_dims=2, num_classes=3, features=[4, 8], norm="batch")
    new = SegmentationSystem(
        spatial_dims=2, num_classes=3, net_kwargs={"features": [4, 8], "norm": "batch"}
    )
    assert isinstance(old.net, UNet) and old.net.config == new.net.config
    assert old.inference_meta() == new.inference_meta()


def test_bad_net_options_give_one_clear_line() -> None:
    with pytest.raises(ValueError, match=r"model option\(s\) \['features'\] belong to the U-Net"):
        SegmentationSystem(net="sdnet", features=[4, 8])
    with pytest.raises(ValueError, match="both at the top level and in net_kwargs"):
        SegmentationSystem(features=[4, 8], net_kwargs={"features": [4, 8]})
    with pytest.raises(ValueError, match=r"unknown network 'quickant' \(did you mean 'quicknat'"):
        SegmentationSystem(net="quickant")
    with pytest.raises(ValueError, match="loss must be one of"):
        SegmentationSystem(features=[4, 8], loss="weighted_dice")


def test_weighted_ce_dice_uses_median_frequency_weights_of_the_training_cases(
    tiny_malc: Path,
) -> None:
    pl.seed_everything(0, verbose=False)
    dm = SegDataModule(str(tiny_malc), mode="2d", batch_size=4, seed=0)
    system = SegmentationSystem.for_data(
        dm,
        net="quicknat",
        net_kwargs={"features": 16, "kernel_size": 3, "depth": 2},
        loss="weighted_ce_dice",
        loss_kwargs={"boundary_weight": 1.5},
    )
    trainer = pl.Trainer(
        accelerator="cpu",
        max_epochs=1,
        limit_train_batches=1,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(system, datamodule=dm)
    # independent count: the training cases' label files (no resampling in this setting)
    counts = np.zeros(dm.num_classes, dtype=np.int64)
    for case in dm.train_cases:
        data = np.asarray(nib.load(case.label).dataobj).astype(np.int64)
        counts += np.bincount(data.ravel(), minlength=dm.num_classes)
    assert torch.equal(dm.class_voxel_counts(), torch.from_numpy(counts))
    loss = system.loss_fn
    assert isinstance(loss, WeightedCEDiceLoss) and loss.boundary_weight == 1.5
    expected = median_frequency_weights(torch.from_numpy(counts)).float()
    torch.testing.assert_close(loss.class_weights, expected)
    assert loss.class_weights.max() > 1.0 > loss.class_weights[0]  # background is frequent


def test_new_unet_checkpoints_record_level_padding(tmp_path: Path) -> None:
    system = SegmentationSystem(spatial_dims=2, num_classes=3, features=[4, 8])
    assert system.inference_meta()["net"]["kwargs"]["padding"] == "level"
    checkpoint: dict = {"state_dict": system.state_dict()}
    system.on_save_checkpoint(checkpoint)
    loaded = SegmentationSystem(spatial_dims=2, num_classes=3, features=[4, 8])
    loaded.on_load_checkpoint(checkpoint)
    assert isinstance(loaded.net, UNet) and loaded.net.padding == "level"
    torch.save(checkpoint, tmp_path / "new.ckpt")
    assert load_checkpoint(tmp_path / "new.ckpt").build_net().padding == "level"
