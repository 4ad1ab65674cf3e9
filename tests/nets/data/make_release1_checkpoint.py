"""How ``release1_unet2d_scse.ckpt`` and ``.npz`` were written: with the first release's code
(segattn at commit 54b9d24, before the network registry) on ``PYTHONPATH``::

    git archive 54b9d24 segattn | tar -x -C /tmp/release1
    PYTHONPATH=/tmp/release1 python tests/nets/data/make_release1_checkpoint.py tests/nets/data

It trains a 2D U-Net + scSE two steps on a tiny MALC-like phantom, saves the Lightning checkpoint
and the labels that release's network predicts for a fixed random input.
"""

from __future__ import annotations

import sys
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import torch

from segattn.data.phantoms import make_malc_dataset
from segattn.training import SegDataModule, SegmentationSystem


def main(out: Path) -> None:
    root = out / "data"
    make_malc_dataset(root, cases=3, size=24, seed=0, test_cases=0)
    pl.seed_everything(0)
    dm = SegDataModule(
        str(root), mode="2d", slice_axis="coronal", batch_size=2, val_fraction=0.34, seed=0
    )
    system = SegmentationSystem.for_data(dm, features=[4, 8], attention="scse")
    trainer = pl.Trainer(
        accelerator="cpu",
        max_steps=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
    )
    trainer.fit(system, datamodule=dm)
    trainer.save_checkpoint(out / "release1_unet2d_scse.ckpt")
    torch.manual_seed(1)
    image = torch.randn(2, 1, 21, 19)
    system.net.eval()
    with torch.no_grad():
        labels = system.net(image).argmax(1)
    np.savez_compressed(
        out / "release1_unet2d_scse.npz",
        image=image.numpy(),
        labels=labels.numpy().astype(np.uint8),
    )


if __name__ == "__main__":
    main(Path(sys.argv[1]))
