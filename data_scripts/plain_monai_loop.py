#!/usr/bin/env python
"""The reference the default 2D recipe is measured against: a plain MONAI training loop.

MONAI's ``BasicUNet`` (widths 16-256), 2D slices along the coronal axis, random flips only, Dice +
cross-entropy, AdamW at a constant learning rate, no validation during training. The train /
held-out split is ``SegDataModule``'s (:func:`segattn.data.layout.split_cases` with the same
``val_fraction`` and ``seed``), preprocessing is the same (RAS, z-score over the volume), and the
held-out Dice is segattn's validation Dice (:func:`segattn.metrics.dice_per_label` per case, mean
over cases per structure, then over structures), so its numbers compare with a ``segattn train``
run's ``val/dice/*`` on the same dataset.

python data_scripts/plain_monai_loop.py --data data/mni152 --epochs 8
"""

from __future__ import annotations

import argparse
import sys
import time

import torch
from monai.data import DataLoader, Dataset
from monai.losses import DiceCELoss
from monai.networks.nets import BasicUNet
from monai.transforms import Compose, LoadImaged, NormalizeIntensityd, Orientationd, RandFlipd
from monai.utils import set_determinism

from segattn.data.layout import load_dataset, split_cases
from segattn.metrics import dice_per_label

CORONAL = 1  # spatial axis of a RAS volume


def main(argv: list[str] | None = None) -> int:
    """Train, predict the held-out cases, print their Dice and the times; returns 0."""
    p = argparse.ArgumentParser(prog="plain_monai_loop.py", description=__doc__.split("\n")[0])
    p.add_argument("--data", required=True, help="nnU-Net v2 dataset folder")
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--features", type=int, nargs=6, default=[16, 32, 64, 128, 256, 16])
    p.add_argument(
        "--flip-axes", type=int, nargs="*", default=[0], help="slice axes to flip (0: left-right)"
    )
    p.add_argument("--val-fraction", type=float, default=0.2)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    start = time.perf_counter()
    set_determinism(args.seed)
    info = load_dataset(args.data)
    train_cases, held_out = split_cases(info.training, args.val_fraction, args.seed)
    load = Compose(
        [
            LoadImaged(["image", "label"], ensure_channel_first=True, image_only=True),
            Orientationd(
                ["image", "label"], axcodes="RAS", labels=(("L", "R"), ("P", "A"), ("I", "S"))
            ),
            NormalizeIntensityd("image"),
        ]
    )

    def volume(case):  # (1, X, Y, Z) float image, (1, X, Y, Z) integer label
        item = load({"image": str(case.images[0]), "label": str(case.label)})
        return item["image"].as_tensor().float(), item["label"].as_tensor().round().long()

    slices = [
        {"image": image.select(1 + CORONAL, s), "label": label.select(1 + CORONAL, s)}
        for image, label in map(volume, train_cases)
        for s in range(image.shape[1 + CORONAL])
    ]
    flips = Compose(
        [RandFlipd(["image", "label"], prob=0.5, spatial_axis=a) for a in args.flip_axes]
    )
    loader = DataLoader(Dataset(slices, flips), batch_size=args.batch_size, shuffle=True)
    net = BasicUNet(2, info.in_channels, info.num_classes, features=tuple(args.features))
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    optimizer = torch.optim.AdamW(net.parameters(), lr=args.lr)
    print(f"{len(train_cases)} training cases, {len(slices)} slices; {len(held_out)} held out")
    train_start = time.perf_counter()
    for epoch in range(args.epochs):
        net.train()
        total, steps, epoch_start = 0.0, 0, time.perf_counter()
        for batch in loader:
            optimizer.zero_grad()
            image, label = batch["image"].as_tensor(), batch["label"].as_tensor()
            loss = loss_fn(net(image), label)
            loss.backward()
            optimizer.step()
            total, steps = total + loss.item(), steps + 1
        seconds = time.perf_counter() - epoch_start
        print(f"epoch {epoch + 1}: loss {total / steps:.4f} ({seconds:.1f} s)")
    train_time = time.perf_counter() - train_start

    net.eval()
    dices = []
    with torch.no_grad():
        for case in held_out:
            image, label = volume(case)
            stack = image.movedim(1 + CORONAL, 0)  # (S, C, a, b): one slice per row
            logits = torch.cat([net(chunk) for chunk in stack.split(args.batch_size)])
            pred = logits.argmax(1).movedim(0, CORONAL)  # (X, Y, Z)
            dices.append(dice_per_label(pred, label[0], info.num_classes))
            print(f"{case.name}: " + " ".join(f"{d:.4f}" for d in dices[-1].tolist()))
    per_label = torch.nanmean(torch.stack(dices), dim=0)
    for name, value in zip(info.label_names[1:], per_label.tolist(), strict=True):
        print(f"dice {name}: {value:.4f}")
    print(f"mean Dice: {float(torch.nanmean(per_label)):.4f}")
    print(f"training time: {train_time:.1f} s")
    print(f"wall time: {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
