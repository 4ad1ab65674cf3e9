from __future__ import annotations

import math
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import ModelCheckpoint

from segattn.inference import Predictor, load_checkpoint
from segattn.training import SegDataModule, SegmentationSystem
from segattn.training.system import class_presence


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


# -- EncNet's SE-loss --


def _enc_system(spatial_dims: int = 2, **kwargs) -> SegmentationSystem:
    options = {"features": [4, 8], "attention": "enc", "se_loss_weight": 0.5, "num_classes": 3}
    options.update(kwargs)
    return SegmentationSystem(spatial_dims=spatial_dims, **options)


def test_class_presence() -> None:
    label = torch.zeros(3, 1, 4, 5, dtype=torch.long)
    label[0, 0, 1, 1] = 2
    label[1] = 1
    expected = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    assert torch.equal(class_presence(label, 3), expected)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_se_loss_is_bce_of_head_on_bottleneck_encoding(spatial_dims: int) -> None:
    system = _enc_system(spatial_dims).train()
    shape = (8,) * spatial_dims
    image = torch.randn(2, 1, *shape)
    label = torch.zeros(2, 1, *shape, dtype=torch.long)
    label[0, 0, 0] = 1  # sample 0: background + class 1; sample 1: background only
    enc = system.net.bottleneck_attention
    system.net(image)
    encoding = enc.last_encoding
    assert encoding is not None and encoding.shape == (2, 8)
    loss = system.se_loss(label)
    assert enc.last_encoding is None  # released after use
    expected = F.binary_cross_entropy_with_logits(
        system.se_head(encoding), torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    )
    torch.testing.assert_close(loss, expected)
    # the loss trains the head, the codewords and the encoder below the bottleneck
    loss.backward()
    assert system.se_head.weight.grad.abs().sum() > 0
    assert enc.codewords.grad.abs().sum() > 0
    encoder_grads = [p.grad for p in system.net.encoder.parameters() if p.grad is not None]
    assert sum(g.abs().sum() for g in encoder_grads) > 0
    # eval passes record nothing
    system.eval()
    system.net(image)
    assert enc.last_encoding is None
    with pytest.raises(RuntimeError, match="training mode"):
        system.se_loss(label)


@pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`")
def test_training_step_adds_weighted_se_loss() -> None:
    system = _enc_system(se_loss_weight=0.25).train()
    batch = {"image": torch.randn(2, 1, 16, 16), "label": torch.randint(0, 3, (2, 1, 16, 16))}
    total = system.training_step(batch, 0)
    out = system.net(batch["image"])
    expected = system._loss(out, batch["label"]) + 0.25 * system.se_loss(batch["label"])
    torch.testing.assert_close(total, expected)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"attention": "scse"}, "attention='enc'"),
        ({"attention": None}, "attention='enc'"),
        ({"attention_positions": ["encoder", "decoder"]}, "bottleneck"),
        ({"se_loss_weight": -0.1}, "se_loss_weight"),
        ({"se_loss_weight": "0.2"}, "se_loss_weight"),
        ({"se_loss_weight": float("nan")}, "se_loss_weight"),
    ],
)
def test_se_loss_bad_settings(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        _enc_system(**kwargs)


def test_se_loss_off_by_default() -> None:
    system = SegmentationSystem(features=[4, 8], attention="enc")
    assert system.se_head is None
    assert not system.net.bottleneck_attention.record_encoding


def test_se_loss_training_checkpoint_loads_in_predictor(tiny_malc: Path, tmp_path: Path) -> None:
    system, trainer, ckpt = _fit(
        tiny_malc, tmp_path / "run", "2d", attention="enc", se_loss_weight=0.2
    )
    assert math.isfinite(float(trainer.callback_metrics["train/se_loss_epoch"]))
    ck = torch.load(ckpt.last_model_path, map_location="cpu", weights_only=True)
    assert "se_head.weight" in ck["state_dict"]  # the head is saved with the system ...
    info = load_checkpoint(ckpt.last_model_path)
    assert not any(k.startswith("se_head") for k in info.state_dict)  # ... but not in the net
    net = info.build_net()  # strict load
    for key, value in system.net.state_dict().items():
        torch.testing.assert_close(net.state_dict()[key], value.cpu())
    image = next((tiny_malc / "imagesTs").iterdir())
    [result] = Predictor(ckpt.last_model_path, device="cpu", progress=False).predict_files(
        [image], tmp_path / "pred"
    )
    assert result.ok, result.error
    # Lightning's own reload rebuilds the head from the saved hyper-parameters
    reloaded = SegmentationSystem.load_from_checkpoint(ckpt.last_model_path, map_location="cpu")
    assert reloaded.se_head is not None
    torch.testing.assert_close(reloaded.se_head.weight, system.se_head.weight.cpu())


def test_modules_exempt_from_weight_decay_get_their_own_group() -> None:
    """GCT's beta is not decayed (as its authors train it); everything else is."""
    system = SegmentationSystem(spatial_dims=2, num_classes=3, features=[8, 16], attention="gct")
    groups = system.parameter_groups()
    assert len(groups) == 2 and groups[1]["weight_decay"] == 0.0
    betas = {id(m.beta) for m in system.net.attention_modules().values()}
    assert {id(p) for p in groups[1]["params"]} == betas
    assert sum(len(g["params"]) for g in groups) == len(list(system.parameters()))
    optimizer = system.configure_optimizers()
    assert optimizer.param_groups[1]["weight_decay"] == 0.0
    plain = SegmentationSystem(spatial_dims=2, num_classes=3, features=[8, 16], attention="se")
    assert len(plain.parameter_groups()) == 1
