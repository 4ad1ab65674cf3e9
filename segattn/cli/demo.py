"""``segattn demo``: generate MALC-like phantoms, train a 2D U-Net + scSE on coronal slices,
predict the held-out cases, and print their per-structure Dice table."""

from __future__ import annotations

import argparse
import logging
import time
import warnings
from datetime import timedelta
from pathlib import Path
from typing import Any

DEFAULTS: dict[str, Any] = {
    "cases": 16,
    "test_cases": 4,
    "size": 64,
    "epochs": 12,
    "batch_size": 16,
    "lr": 1e-2,
    "features": [16, 32, 64, 128],
}


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "demo",
        help="generate data, train a 2D U-Net + scSE, predict and evaluate (a few minutes on CPU)",
        description=__doc__,
    )
    p.add_argument("--out", default="segattn_demo", help="output folder (default: %(default)s)")
    p.add_argument("--cases", type=int, default=DEFAULTS["cases"], help="phantoms to generate")
    p.add_argument(
        "--test-cases", type=int, default=DEFAULTS["test_cases"], help="held-out phantoms"
    )
    p.add_argument("--size", type=int, default=DEFAULTS["size"], help="phantom grid size")
    p.add_argument("--epochs", type=int, default=DEFAULTS["epochs"], help="training epochs")
    p.add_argument("--attention", default="scse", help="attention module (default: scse)")
    p.add_argument(
        "--net",
        default="unet",
        help="network name from segattn.nets.available() (default: unet, widths 16-128)",
    )
    p.add_argument(
        "--net-kwargs",
        default=None,
        type=_json_object,
        help="network options as JSON, e.g. '{\"features\": 16}' for a narrow QuickNAT",
    )
    p.add_argument(
        "--loss",
        default="dice_ce",
        help="loss kind: dice_ce (default), dice, ce or weighted_ce_dice (the scSE paper's)",
    )
    p.add_argument(
        "--lr", type=float, default=DEFAULTS["lr"], help="AdamW learning rate (default %(default)s)"
    )
    p.add_argument(
        "--max-minutes",
        type=float,
        default=None,
        help="stop training after this many minutes (same wall-clock budget for comparisons)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of data, split and training")
    p.add_argument(
        "--accelerator", default="cpu", help="Lightning accelerator: cpu, gpu, auto (default cpu)"
    )
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(func=run)


def _json_object(text: str) -> dict[str, Any]:
    import json

    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"not JSON: {err}") from err
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r}")
    return value


def run(args: argparse.Namespace) -> int:
    from segattn.errors import SegattnError

    if args.cases - args.test_cases < 2 or args.test_cases < 1:
        raise SegattnError(
            f"--cases {args.cases} with --test-cases {args.test_cases}: need >= 2 training "
            "and >= 1 held-out case"
        )
    start = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data_root = out / "data"
    result = run_demo(
        out,
        data_root,
        cases=args.cases,
        test_cases=args.test_cases,
        size=args.size,
        epochs=args.epochs,
        attention=args.attention,
        seed=args.seed,
        accelerator=args.accelerator,
        progress=not args.no_progress,
        net=args.net,
        net_kwargs=args.net_kwargs,
        loss=args.loss,
        max_minutes=args.max_minutes,
        lr=args.lr,
    )
    print(f"model: {out / 'model.ckpt'}")
    print(f"predictions: {out / 'predictions'}")
    print(f"overlay: {result['overlay']}")
    print(f"wall time: {time.perf_counter() - start:.0f} s")
    print(f"Dice on the {args.test_cases} held-out cases:")
    print(result["table"])  # ends with the line `mean Dice: 0.xxx`
    return 0


def run_demo(
    out: Path,
    data_root: Path,
    *,
    cases: int,
    test_cases: int,
    size: int,
    epochs: int,
    attention: str,
    seed: int,
    accelerator: str = "cpu",
    progress: bool = True,
    net: str = "unet",
    net_kwargs: dict[str, Any] | None = None,
    loss: str = "dice_ce",
    max_minutes: float | None = None,
    lr: float = DEFAULTS["lr"],
) -> dict[str, Any]:
    """The demo as a function (used by tests with tiny settings).

    ``net``/``net_kwargs`` pick another network (default: the U-Net with widths 16-128),
    ``loss`` the loss kind, ``lr`` AdamW's learning rate, ``max_minutes`` caps the training
    time (for comparisons at the same wall-clock budget).
    """
    import lightning.pytorch as pl
    import nibabel as nib
    import numpy as np
    import torch
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger

    from segattn.data.phantoms import make_malc_dataset
    from segattn.evaluation import evaluate_folders
    from segattn.fileio import copy_atomic
    from segattn.inference import Predictor
    from segattn.training import SegDataModule, SegmentationSystem
    from segattn.viz import save_overlay

    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    warnings.filterwarnings("ignore", ".*LeafSpec.*")
    make_malc_dataset(data_root, cases=cases, size=size, seed=seed, test_cases=test_cases)
    pl.seed_everything(seed, workers=True, verbose=False)
    dm = SegDataModule(
        str(data_root),
        mode="2d",
        slice_axis="coronal",
        batch_size=DEFAULTS["batch_size"],
        val_fraction=0.2,
        seed=seed,
    )

    def optimizer(params: Any) -> torch.optim.Optimizer:
        return torch.optim.AdamW(params, lr=lr, weight_decay=1e-5)

    def scheduler(opt: torch.optim.Optimizer) -> Any:
        return torch.optim.lr_scheduler.PolynomialLR(opt, total_iters=max(epochs, 1), power=0.9)

    if net == "unet" and not net_kwargs:
        net_kwargs = {"features": DEFAULTS["features"]}
    system = SegmentationSystem.for_data(
        dm,
        net=net,
        net_kwargs=dict(net_kwargs or {}),
        loss=loss,
        attention=attention,
        optimizer=optimizer,
        lr_scheduler=scheduler,
    )
    ckpt_dir = out / "checkpoints"
    checkpoint = ModelCheckpoint(
        dirpath=ckpt_dir,
        monitor="val/mean_dice",
        mode="max",
        filename="best",
        save_last=True,
        enable_version_counter=False,
    )
    trainer = pl.Trainer(
        accelerator=accelerator,
        devices=1,
        max_epochs=epochs,
        max_time=None if max_minutes is None else timedelta(minutes=max_minutes),
        callbacks=[checkpoint],
        logger=CSVLogger(str(out), name="logs"),
        enable_progress_bar=progress,
        enable_model_summary=False,
        log_every_n_steps=10,
        num_sanity_val_steps=0,
    )
    trainer.fit(system, datamodule=dm)
    best = checkpoint.best_model_path or checkpoint.last_model_path
    copy_atomic(best, out / "model.ckpt")

    predictor = Predictor(out / "model.ckpt", device="auto", progress=progress)
    test_images = sorted((data_root / "imagesTs").glob("*.nii.gz"))
    pred_dir = out / "predictions"
    predictor.predict_files(test_images, pred_dir, overwrite=True)
    labels = predictor.labels
    result = evaluate_folders(pred_dir, data_root / "labelsTs", labels=labels)

    # overlay: the middle coronal slice of the first held-out case, in RAS display order
    first_pred = sorted(pred_dir.glob("*.nii.gz"))[0]
    case = first_pred.name[: -len(".nii.gz")]
    img = nib.as_closest_canonical(nib.load(str(test_images[0])))
    lab = nib.as_closest_canonical(nib.load(str(data_root / "labelsTs" / first_pred.name)))
    prd = nib.as_closest_canonical(nib.load(str(first_pred)))
    y = img.shape[1] // 2

    def view(a: Any) -> Any:
        return np.rot90(np.asarray(a.dataobj)[:, y, :])

    overlay = save_overlay(
        view(img).astype(np.float32),
        view(lab),
        view(prd),
        out / "overlay.png",
        num_classes=len(labels),
        title=f"{case}, coronal slice {y}",
    )
    return {
        "table": result.format_table(),
        "mean_dice": result.mean_dice,
        "overlay": overlay,
        "best_checkpoint": best,
    }
