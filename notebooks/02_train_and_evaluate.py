# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 02 · Train and evaluate a 2D scSE U-Net on MALC-like brain MRI
#
# The workflow of Roy et al., "Concurrent Spatial and Channel Squeeze & Excitation in Fully
# Convolutional Networks" (MICCAI 2018, https://arxiv.org/abs/1803.02579), through the Python
# API: generate MALC-like phantoms (QuickNAT's 32 structures), train a 2D U-Net with scSE after
# every conv block on coronal slices, follow loss and Dice, evaluate per structure on held-out
# scans, and look at the predictions in three planes.

# %% tags=["parameters"]
import os
from pathlib import Path

FAST = os.environ.get("SEGATTN_NOTEBOOK_FAST") == "1"
OUT = Path(os.environ.get("SEGATTN_NOTEBOOK_OUT", "notebook_outputs/02_train_and_evaluate"))
CASES = 4 if FAST else 16  # phantoms generated, of which TEST_CASES are held out
TEST_CASES = 1 if FAST else 4
SIZE = 24 if FAST else 64  # voxels per axis
EPOCHS = 2 if FAST else 8
FEATURES = [8, 16] if FAST else [16, 32, 64, 128]
BATCH_SIZE = 16
LR = 1e-2
SEED = 0

# %%
import logging
import warnings

import lightning.pytorch as pl
import matplotlib.pyplot as plt
import nibabel as nib
import numpy as np
import pandas as pd
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger

from segattn.data.phantoms import make_malc_dataset
from segattn.evaluation import evaluate_folders
from segattn.inference import Predictor
from segattn.training import SegDataModule, SegmentationSystem
from segattn.viz import label_colormap

OUT.mkdir(parents=True, exist_ok=True)
DATA = OUT / "data"
logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
warnings.filterwarnings("ignore", ".*does not have many workers.*")
torch.set_num_threads(2)

# %% [markdown]
# ## Data
#
# `make_malc_dataset` writes an nnU-Net v2 dataset (`imagesTr/`, `labelsTr/`, `imagesTs/`,
# `labelsTs/`, `dataset.json`): T1-like contrast, skull and scalp, per-case pose, deformation,
# bias field and Rician noise.

# %%
info = make_malc_dataset(DATA, cases=CASES, size=SIZE, seed=SEED, test_cases=TEST_CASES, overwrite=True)
sorted(p.name for p in (DATA / "imagesTs").iterdir())

# %% [markdown]
# ## Train
#
# `SegDataModule` preprocesses the volumes once (RAS, z-score) and samples coronal slices;
# `SegmentationSystem` is the U-Net with scSE and a Dice + cross-entropy loss, logging the Dice of
# every structure on whole validation volumes.

# %%
pl.seed_everything(SEED, workers=True, verbose=False)
dm = SegDataModule(str(DATA), mode="2d", slice_axis="coronal", batch_size=BATCH_SIZE, val_fraction=0.25, seed=SEED)
system = SegmentationSystem.for_data(
    dm,
    features=FEATURES,
    attention="scse",
    optimizer=lambda params: torch.optim.AdamW(params, lr=LR, weight_decay=1e-5),
    lr_scheduler=lambda opt: torch.optim.lr_scheduler.PolynomialLR(opt, total_iters=EPOCHS, power=0.9),
)
checkpoint = ModelCheckpoint(dirpath=OUT / "checkpoints", monitor="val/mean_dice", mode="max", filename="best")
trainer = pl.Trainer(
    accelerator="cpu",
    max_epochs=EPOCHS,
    callbacks=[checkpoint],
    logger=CSVLogger(str(OUT), name="logs"),
    enable_progress_bar=False,
    enable_model_summary=False,
    log_every_n_steps=5,
    num_sanity_val_steps=0,
)
trainer.fit(system, datamodule=dm)
best = Path(checkpoint.best_model_path)
best

# %% [markdown]
# ## The paper's loss weight map
#
# Roy et al. train with QuickNAT's weighted cross-entropy plus Dice (`loss="weighted_ce_dice"`
# here; this notebook's model uses plain Dice + cross-entropy): every voxel's cross-entropy is
# weighted by its class's median-frequency weight `median_k f_k / f_l` (rare structures weigh
# more) plus `boundary_weight = 2` on label boundaries. The class frequencies are counted over
# the preprocessed training volumes (`SegDataModule.class_voxel_counts()`); drawn on a coronal
# training slice (log colour scale).

# %%
from matplotlib.colors import LogNorm

from segattn.training.losses import median_frequency_weights, voxel_weights

class_weights = median_frequency_weights(dm.class_voxel_counts())
train_case = dm.train_cases[0].name
train_image = np.asarray(nib.as_closest_canonical(nib.load(DATA / "imagesTr" / f"{train_case}_0000.nii.gz")).dataobj)
train_label = np.asarray(nib.as_closest_canonical(nib.load(DATA / "labelsTr" / f"{train_case}.nii.gz")).dataobj)
y = int(np.argwhere(train_label > 0)[:, 1].mean().round())  # coronal = second RAS axis
slice_label = np.ascontiguousarray(train_label[:, y].T).astype(np.int64)
weights = voxel_weights(torch.from_numpy(slice_label)[None, None], class_weights, boundary_weight=2.0)[0, 0].numpy()
colours_train = label_colormap(len(class_weights))
rgba = colours_train[slice_label]
rgba[..., 3] = np.where(slice_label > 0, 1.0, 0.0)
fig, axes = plt.subplots(1, 3, figsize=(12, 4.2))
axes[0].imshow(train_image[:, y].T, cmap="gray", origin="lower")
axes[0].set_title(f"{train_case}, coronal slice {y}")
axes[1].imshow(train_image[:, y].T, cmap="gray", origin="lower")
axes[1].imshow(rgba, origin="lower", interpolation="nearest")
axes[1].set_title("label")
norm = LogNorm(vmin=weights[weights > 0].min(), vmax=weights.max())
shown = axes[2].imshow(np.where(weights > 0, weights, np.nan), cmap="magma", origin="lower", norm=norm)
axes[2].set_title("loss weight per voxel (log scale)")
fig.colorbar(shown, ax=axes[2], fraction=0.046)
for ax in axes:
    ax.axis("off")
fig.tight_layout()
fig.savefig(OUT / "loss_weights.png", dpi=70)
pd.Series(class_weights.numpy(), index=dm.label_names, name="median-frequency weight").sort_values().round(3).to_frame().T

# %% [markdown]
# ## Loss and Dice curves

# %%
metrics = pd.read_csv(Path(trainer.logger.log_dir) / "metrics.csv")
per_epoch = metrics.groupby("epoch").mean(numeric_only=True)
fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
for column, style in (("train/loss_epoch", "-o"), ("val/loss", "-s")):
    if column in per_epoch:
        per_epoch[column].dropna().plot(ax=axes[0], style=style, label=column)
axes[0].set_xlabel("epoch")
axes[0].set_title("loss")
axes[0].legend()
dice_columns = [c for c in per_epoch if c.startswith("val/dice/")]
per_epoch[dice_columns].dropna(how="all").plot(ax=axes[1], legend=False, color="0.8", lw=0.8)
per_epoch["val/mean_dice"].dropna().plot(ax=axes[1], style="-o", color="tab:red", label="mean")
axes[1].set_xlabel("epoch")
axes[1].set_title("validation Dice (grey: each structure)")
axes[1].set_ylim(0, 1)
axes[1].legend()
fig.tight_layout()
fig.savefig(OUT / "curves.png", dpi=70)

# %% [markdown]
# ## Held-out scans: predict and evaluate per structure
#
# The `Predictor` applies the checkpoint's preprocessing, runs slice by slice along the trained
# axis and maps the labels back to each scan's own grid; `evaluate_folders` scores Dice per
# case and structure.

# %%
predictor = Predictor(best, device="cpu", progress=False)
predictions = OUT / "predictions"
predictor.predict_files([DATA / "imagesTs"], predictions, overwrite=True)
result = evaluate_folders(predictions, DATA / "labelsTs", labels=predictor.labels)
table = pd.DataFrame(
    {name: {"dice_mean": s.mean, "dice_std": s.std, "cases": s.n} for name, s in result.summary().items()}
).T
table.to_csv(OUT / "dice_per_structure.csv")
print(f"mean Dice over structures: {result.mean_dice:.3f}")
table.round(3)

# %%
fig, ax = plt.subplots(figsize=(12, 3.8))
ordered = table.sort_values("dice_mean")
ax.bar(ordered.index, ordered["dice_mean"], yerr=ordered["dice_std"], color="tab:blue")
ax.set_ylim(0, 1)
ax.set_ylabel("Dice")
ax.set_title(f"held-out Dice per structure (mean {result.mean_dice:.3f})")
ax.tick_params(axis="x", rotation=90, labelsize=7)
fig.tight_layout()
fig.savefig(OUT / "dice.png", dpi=70)

# %% [markdown]
# ## Predictions in three planes
#
# The first held-out case in RAS display order: the scan, the reference labels and the
# prediction, through the centre of the labelled brain.

# %%
case = sorted(predictions.glob("*.nii.gz"))[0].name
scan = nib.as_closest_canonical(nib.load(DATA / "imagesTs" / case.replace(".nii.gz", "_0000.nii.gz")))
truth = nib.as_closest_canonical(nib.load(DATA / "labelsTs" / case))
pred = nib.as_closest_canonical(nib.load(predictions / case))
image, ref, predicted = (np.asarray(v.dataobj) for v in (scan, truth, pred))
centre = np.argwhere(ref > 0).mean(0).round().astype(int)
colours = label_colormap(len(predictor.labels))


def planes(volume):
    x, y, z = centre
    return {"sagittal": volume[x].T, "coronal": volume[:, y].T, "axial": volume[:, :, z].T}


def overlay(ax, img, lab, title):
    ax.imshow(img, cmap="gray", origin="lower")
    if lab is not None:
        rgba = colours[lab.astype(int)]
        rgba[..., 3] = np.where(lab > 0, 0.55, 0.0)
        ax.imshow(rgba, origin="lower", interpolation="nearest")
    ax.set_title(title, fontsize=9)
    ax.axis("off")


fig, axes = plt.subplots(3, 3, figsize=(9, 9))
for col, plane in enumerate(("sagittal", "coronal", "axial")):
    overlay(axes[0, col], planes(image)[plane], None, f"{plane}: scan")
    overlay(axes[1, col], planes(image)[plane], planes(ref)[plane], f"{plane}: reference")
    overlay(axes[2, col], planes(image)[plane], planes(predicted)[plane], f"{plane}: prediction")
fig.suptitle(case)
fig.tight_layout()
fig.savefig(OUT / "overlays.png", dpi=70)

# %% [markdown]
# Reading the table: compare the small deep grey nuclei (accumbens, pallidum, amygdala) with the
# large structures (white matter, cortex, ventricles): a few voxels of error weigh far more in
# the Dice of a small structure. The fast setting (used in CI) only checks that the workflow
# runs; its numbers mean nothing.
