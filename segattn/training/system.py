"""The segmentation *system*: a LightningModule holding a network and a loss.

It trains on 2D slices or 3D patches, validates on whole volumes (slice-wise prediction re-stacked
in 2D, Gaussian-blended sliding window in 3D), logs Dice per structure by name, and writes into
every checkpoint what inference needs (``checkpoint["segattn"]``, see
:mod:`segattn.inference.checkpoint`).
"""

from __future__ import annotations

import logging
import math
from typing import Any

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor, nn

from segattn.attention import ContextEncoding
from segattn.data.transforms import plain_tensor
from segattn.inference.checkpoint import CheckpointMeta
from segattn.inference.volume import predict_volume
from segattn.metrics import dice_per_label
from segattn.nets import UNet
from segattn.nets import create as create_net
from segattn.training.compile import use_project_inductor_cache
from segattn.training.losses import WeightedCEDiceLoss, build_loss, median_frequency_weights
from segattn.training.partial_labels import mask_unannotated_dice, merge_unannotated
from segattn.training.schedules import PolyLR

log = logging.getLogger(__name__)

#: U-Net options that ``model`` also takes at its top level (the first release's form).
UNET_TOP_LEVEL = (
    "features",
    "attention_positions",
    "norm",
    "act",
    "dropout",
    "deep_supervision",
)


def default_optimizer(params: Any) -> torch.optim.Optimizer:
    """AdamW, lr 1e-3, weight decay 1e-5 (used when the config names no optimizer)."""
    return torch.optim.AdamW(params, lr=1e-3, weight_decay=1e-5)


class SegmentationSystem(pl.LightningModule):
    """A network of ``segattn.nets`` + a loss, with per-structure Dice on whole validation
    volumes.

    Args:
        spatial_dims: 2 (slices) or 3 (patches); linked from the DataModule's ``mode`` by the CLI.
        in_channels: image channels (linked from ``dataset.json``).
        num_classes: classes including background (linked from ``dataset.json``).
        net: network name from ``segattn.nets.available()`` (``unet``, ``sdnet``, ``quicknat``,
            ``fcdensenet``).
        net_kwargs: the network's own options, e.g. ``{"features": [32, 64, 128, 256]}`` for
            ``unet``, ``{"features": 64}`` for ``quicknat``, ``{"preset": "fcdensenet67"}``.
        attention: registry name of the module after every block (``None``: none).
        attention_kwargs: extra arguments of that module, e.g. ``{"aggregation": "max"}``.
        features, attention_positions, norm, act, dropout, deep_supervision: U-Net options at the
            top level, as in the first release (``None`` leaves the U-Net default); prefer
            ``net_kwargs``. Other networks refuse them.
        loss: ``dice_ce`` (MONAI DiceCELoss, default), ``dice``, ``ce`` or ``weighted_ce_dice``
            (the scSE/QuickNAT paper's loss, see :mod:`segattn.training.losses`; its
            median-frequency class weights come from the DataModule's training cases at setup).
        loss_kwargs: options of the loss, e.g. ``{"boundary_weight": 2.0}``.
        optimizer: optimizer factory (``--model.optimizer AdamW --model.optimizer.lr 3e-3``).
        lr_scheduler: scheduler factory or ``None``; stepped once per epoch.
        data_meta: label names, preprocessing, mode, slice axis and patch size, linked from
            :attr:`segattn.training.SegDataModule.inference_meta`; stored in checkpoints.
        slice_batch: slices per forward pass when validating in 2D.
        sw_batch_size: windows per forward pass when validating in 3D.
        overlap: sliding-window overlap when validating in 3D.
        se_loss_weight: weight of EncNet's semantic-encoding loss (0 disables it; EncNet uses
            0.2). Needs ``attention="enc"`` at the bottleneck. ``train/se_loss`` logs the term,
            ``train/loss`` the total that is optimised. See :meth:`se_loss`.
        compile: train through ``torch.compile(net, dynamic=False)`` (Inductor; the first steps
            are slow while it compiles, and each new input shape compiles once more; validation
            and inference stay eager, checkpoints are unchanged).
            Inductor's cache goes to ``.cache/torchinductor`` of the working directory unless
            ``TORCHINDUCTOR_CACHE_DIR`` is set.

    Example:
        >>> system = SegmentationSystem(spatial_dims=2, num_classes=3, features=[8, 16])
        >>> system.net(torch.zeros(1, 1, 33, 37)).shape
        torch.Size([1, 3, 33, 37])
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 1,
        num_classes: int = 2,
        net: str = "unet",
        net_kwargs: dict[str, Any] | None = None,
        attention: str | None = "scse",
        attention_kwargs: dict[str, Any] | None = None,
        features: list[int] | None = None,
        attention_positions: list[str] | None = None,
        norm: str | None = None,
        act: str | None = None,
        dropout: float | None = None,
        deep_supervision: bool | None = None,
        loss: str = "dice_ce",
        loss_kwargs: dict[str, Any] | None = None,
        optimizer: OptimizerCallable = default_optimizer,
        lr_scheduler: LRSchedulerCallable | None = None,
        data_meta: dict[str, Any] | None = None,
        slice_batch: int = 16,
        sw_batch_size: int = 4,
        overlap: float = 0.5,
        se_loss_weight: float = 0.0,
        compile: bool = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["optimizer", "lr_scheduler"])
        top_level = {
            "features": features,
            "attention_positions": attention_positions,
            "norm": norm,
            "act": act,
            "dropout": dropout,
            "deep_supervision": deep_supervision,
        }
        self.num_classes = int(num_classes)
        self.net_name = str(net).strip().lower()
        # any registered network: config, attention_modules(), forward (see segattn.nets)
        network: Any = create_net(
            self.net_name,
            int(spatial_dims),
            int(in_channels),
            int(num_classes),
            attention=attention,
            attention_kwargs=dict(attention_kwargs or {}),
            **_net_options(self.net_name, net_kwargs, top_level),
        )
        self.net = network
        self.loss_fn = build_loss(loss, int(num_classes), **dict(loss_kwargs or {}))
        self.optimizer_factory = optimizer
        self.scheduler_factory = lr_scheduler
        self.data_meta = dict(data_meta or {})
        net_config: dict[str, Any] = network.config
        if "deep_supervision" in net_config:
            net_config["deep_supervision"] = False  # inference needs only the full-resolution head
        self._checkpoint_meta = CheckpointMeta.for_net(self.net_name, net_config, self.data_meta)
        self.slice_batch = int(slice_batch)
        self.sw_batch_size = int(sw_batch_size)
        self.overlap = float(overlap)
        self._val_dice: list[Tensor] = []
        self.se_loss_weight, self.se_head = self._build_se_head(se_loss_weight)
        self.compile_net = bool(compile)

    @classmethod
    def for_data(cls, datamodule: Any, **kwargs: Any) -> SegmentationSystem:
        """Build a system whose data-dependent arguments come from a :class:`SegDataModule`."""
        return cls(
            spatial_dims=datamodule.spatial_dims,
            in_channels=datamodule.in_channels,
            num_classes=datamodule.num_classes,
            data_meta=datamodule.inference_meta,
            **kwargs,
        )

    def forward(self, x: Tensor) -> Tensor:
        """x: ``(N, C, *spatial)`` -> logits ``(N, K, *spatial)`` (a list in training with deep
        supervision)."""
        return self.net(x)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        return self._shared_step(batch, "train")

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        return self._shared_step(batch, "val")

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        return self._shared_step(batch, "test")

    def on_validation_epoch_start(self) -> None:
        self._val_dice = []

    def on_test_epoch_start(self) -> None:
        self._val_dice = []

    def on_validation_epoch_end(self) -> None:
        self._log_dice("val")

    def on_test_epoch_end(self) -> None:
        self._log_dice("test")

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(self.parameter_groups())
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer)
        if isinstance(scheduler, PolyLR) and scheduler.total_iters is None:
            scheduler.total_iters = self._schedule_length()
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"},
        }

    def _schedule_length(self) -> int:
        """Epochs of the run, for a schedule that ends with it (the trainer's ``max_epochs``)."""
        max_epochs = self.trainer.max_epochs if self._trainer is not None else None
        if max_epochs is None or max_epochs < 1:
            raise ValueError(
                "PolyLR(total_iters=None) ends at the trainer's max_epochs, which is "
                f"{max_epochs!r}; set --trainer.max_epochs or the scheduler's total_iters"
            )
        return int(max_epochs)

    def parameter_groups(self) -> list[dict[str, Any]]:
        """Parameters for the optimiser: one group, plus a ``weight_decay=0`` group for the
        parameters that modules list in a timm-style ``no_weight_decay()`` (e.g. GCT's ``beta``,
        which its authors exempt from weight decay)."""
        exempt: set[str] = set()
        for prefix, module in self.named_modules():
            hook = getattr(module, "no_weight_decay", None)
            if callable(hook):
                exempt |= {f"{prefix}.{name}" if prefix else name for name in hook()}
        decay: list[nn.Parameter] = []
        no_decay: list[nn.Parameter] = []
        for name, param in self.named_parameters():
            (no_decay if name in exempt else decay).append(param)
        groups: list[dict[str, Any]] = [{"params": decay}]
        if no_decay:
            groups.append({"params": no_decay, "weight_decay": 0.0})
        return groups

    def setup(self, stage: str) -> None:
        """Median-frequency class weights for ``weighted_ce_dice`` from the DataModule's training
        cases (once; weights given in ``loss_kwargs`` are kept)."""
        if not isinstance(self.loss_fn, WeightedCEDiceLoss) or stage != "fit":
            return
        if (self.hparams.get("loss_kwargs") or {}).get("class_weights") is not None:
            return
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer else None
        counts_of = getattr(datamodule, "class_voxel_counts", None)
        if not callable(counts_of):
            log.warning("weighted_ce_dice: no DataModule with class_voxel_counts(); weights 1")
            return
        self.loss_fn.set_class_weights(median_frequency_weights(counts_of()))

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["segattn"] = self.inference_meta()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """A U-Net saved before its ``padding`` option padded the input to a multiple of
        ``size_divisor``: keep doing so, so that it predicts and trains on as it was trained."""
        net_meta = (checkpoint.get("segattn") or {}).get("net") or {}
        if isinstance(self.net, UNet) and "padding" not in (net_meta.get("kwargs") or {}):
            self.net.padding = "input"
            self._checkpoint_meta = CheckpointMeta.for_net(
                self.net_name,
                {**self._checkpoint_meta.net_kwargs, "padding": "input"},
                self.data_meta,
            )

    # -- helpers --
    @property
    def label_names(self) -> list[str]:
        """Structure names by class index, background first."""
        return list(self._checkpoint_meta.labels)

    def inference_meta(self) -> dict[str, Any]:
        """Everything :class:`segattn.inference.Predictor` needs, in plain JSON types."""
        return self._checkpoint_meta.to_dict()

    def _shared_step(self, batch: dict[str, Any], stage: str) -> Tensor:
        # plain tensors: MONAI MetaTensors would leak into logged metrics and checkpoints
        image = plain_tensor(batch["image"]).float()
        label = plain_tensor(batch["label"]).long()
        # (N, K) False where a structure is not annotated in the sample's case: merged into
        # background by the loss, NaN in the validation Dice (segattn.training.partial_labels)
        annotated = batch.get("annotated")
        if stage == "train":
            out = self._training_forward(image)
            loss = self._loss(out, label, annotated)
            if self.se_head is not None:
                se_loss = self.se_loss(label)
                self.log(
                    "train/se_loss", se_loss, on_step=True, on_epoch=True, batch_size=image.shape[0]
                )
                loss = loss + self.se_loss_weight * se_loss
            self.log(
                "train/loss",
                loss,
                prog_bar=True,
                on_step=True,
                on_epoch=True,
                batch_size=image.shape[0],
            )
            return loss
        meta = self._checkpoint_meta
        losses, dices = [], []
        for i in range(image.shape[0]):
            logits = predict_volume(
                self.net,
                image[i],
                mode=meta.mode,
                slice_axis=meta.slice_axis,
                patch_size=None if meta.patch_size is None else list(meta.patch_size),
                slice_batch=self.slice_batch,
                sw_batch_size=self.sw_batch_size,
                overlap=self.overlap,
            )
            case_annotated = None if annotated is None else annotated[i : i + 1]
            losses.append(
                self.loss_fn(merge_unannotated(logits[None], case_annotated), label[i][None])
            )
            dice = dice_per_label(logits.argmax(0), label[i][0], self.num_classes)
            dices.append(
                mask_unannotated_dice(dice, None if case_annotated is None else case_annotated[0])
            )
        loss = torch.stack(losses).mean()
        self._val_dice.extend(dices)
        self.log(
            f"{stage}/loss",
            loss,
            prog_bar=stage == "val",
            batch_size=image.shape[0],
            sync_dist=True,
        )
        return loss

    def _training_forward(self, image: Tensor) -> Any:
        """``self.net(image)``, through ``torch.compile`` when ``compile`` is on."""
        if not self.compile_net:
            return self.net(image)
        compiled = self.__dict__.get("_compiled_net")
        if compiled is None:
            use_project_inductor_cache()
            # static shapes: Inductor's dynamic-shape graphs of the padded U-Net fail to build
            # (torch 2.13); each new input shape compiles once more instead
            compiled = torch.compile(self.net, dynamic=False)
            # kept outside nn.Module's registry: parameters and state_dict keys stay the net's
            self.__dict__["_compiled_net"] = compiled
        return compiled(image)

    def _build_se_head(self, weight: float) -> tuple[float, nn.Linear | None]:
        """Validate ``se_loss_weight`` and build the class-presence head (None when off)."""
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not weight >= 0:
            raise ValueError(f"se_loss_weight must be a number >= 0, got {weight!r}")
        if weight == 0:
            return 0.0, None
        encoder = self._bottleneck_attention()
        if not isinstance(encoder, ContextEncoding):
            raise ValueError(
                f"se_loss_weight={weight} needs attention='enc' at the bottleneck (EncNet's "
                f"SE-loss reads its encoding), got attention={self.hparams['attention']!r} with "
                f"modules at {list(self.net.attention_modules())}"
            )
        if self.num_classes < 2:
            raise ValueError("se_loss_weight > 0 needs num_classes >= 2 (foreground classes)")
        encoder.record_encoding = True
        return float(weight), nn.Linear(encoder.channels, self.num_classes - 1)

    def se_loss(self, label: Tensor) -> Tensor:
        """EncNet's semantic-encoding loss for the latest training forward pass of ``self.net``.

        The bottleneck ``enc`` module's encoding ``e`` ``(N, C)`` goes through a linear head to
        one logit per foreground class, scored with binary cross-entropy against class presence
        (``presence[n, k] = 1`` if class ``k + 1`` occurs anywhere in sample ``n``'s label).
        Background is left out: it is in virtually every slice and patch, so its target would be
        constant. Only the bottleneck encoding is used, as EncNet applies the loss to its top-level
        encoding. The head lives in this system, outside ``net``, so inference checkpoints hold the
        same network weights with or without it. The encoding is released after use.

        Args:
            label: ``(N, 1, *spatial)`` integer label of the batch just passed through the net.

        Returns:
            Scalar loss.

        Raises:
            RuntimeError: the SE-loss is off or no training forward pass recorded an encoding.
        """
        encoder = self._bottleneck_attention()
        if self.se_head is None or not isinstance(encoder, ContextEncoding):
            raise RuntimeError("se_loss() needs se_loss_weight > 0")
        encoding, encoder.last_encoding = encoder.last_encoding, None
        if encoding is None:
            raise RuntimeError("no encoding recorded: run self.net on a batch in training mode")
        logits = self.se_head(encoding)
        presence = class_presence(label, self.num_classes)[:, 1:].to(logits.dtype)
        return F.binary_cross_entropy_with_logits(logits, presence)

    def _bottleneck_attention(self) -> nn.Module | None:
        return self.net.attention_modules().get("bottleneck")

    def _loss(
        self, out: Tensor | list[Tensor], label: Tensor, annotated: Tensor | None = None
    ) -> Tensor:
        if isinstance(out, Tensor):
            return self.loss_fn(merge_unannotated(out, annotated), label)
        weights = [0.5**i for i in range(len(out))]
        total = sum(weights)
        loss = out[0].new_zeros(())
        for w, logits in zip(weights, out):
            target = (
                label
                if logits.shape[2:] == label.shape[2:]
                else F.interpolate(label.float(), size=logits.shape[2:], mode="nearest").long()
            )
            loss = loss + w / total * self.loss_fn(merge_unannotated(logits, annotated), target)
        return loss

    def _log_dice(self, stage: str) -> None:
        if not self._val_dice:
            return
        dice = torch.stack(self._val_dice).to(self.device)  # (cases, K-1)
        if self.trainer.world_size > 1:
            gathered = self.all_gather(dice)
            assert isinstance(gathered, Tensor)
            dice = gathered.reshape(-1, dice.shape[-1])
        # every rank now holds the same values, so sync_dist only averages identical numbers
        per_label = _nanmean(dice, dim=0)
        for name, value in zip(self.label_names[1:], per_label.tolist()):
            if not math.isnan(value):  # absent from every case's label and prediction
                self.log(f"{stage}/dice/{name}", value, sync_dist=True)
        mean = _nanmean(per_label, dim=0).nan_to_num(0.0)
        self.log(f"{stage}/mean_dice", mean, prog_bar=True, sync_dist=True)
        self._val_dice = []


def class_presence(label: Tensor, num_classes: int) -> Tensor:
    """Which classes occur in each sample.

    Args:
        label: ``(N, 1, *spatial)`` or ``(N, *spatial)`` integer labels in ``0..num_classes-1``.
        num_classes: ``K``.

    Returns:
        ``(N, K)`` float32, 1 where class ``k`` occurs in sample ``n``, else 0.
    """
    flat = label.reshape(label.shape[0], -1).long()
    presence = torch.zeros(label.shape[0], num_classes, device=label.device)
    return presence.scatter_(1, flat, 1.0)


def _nanmean(x: Tensor, dim: int) -> Tensor:
    return torch.nanmean(x.double(), dim=dim).float()


def _net_options(
    name: str, net_kwargs: dict[str, Any] | None, top_level: dict[str, Any]
) -> dict[str, Any]:
    """The network's options from ``net_kwargs`` and, for the U-Net, the top-level options.

    Raises:
        ValueError: a top-level U-Net option given for another network, or given twice.
    """
    options = dict(net_kwargs or {})
    given = {k: v for k, v in top_level.items() if v is not None}
    if name != "unet" and given:
        raise ValueError(
            f"model option(s) {sorted(given)} belong to the U-Net; for net {name!r} put the "
            "network's options in model.net_kwargs"
        )
    twice = sorted(set(given) & set(options))
    if twice:
        raise ValueError(f"U-Net option(s) {twice} given both at the top level and in net_kwargs")
    if "features" in given:
        given["features"] = [int(f) for f in given["features"]]
    return {**given, **options}
