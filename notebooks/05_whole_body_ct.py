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
# # 05 · Whole-body CT: VISCERAL-like phantoms, windowing, 3D training, bounded-memory inference
#
# VISCERAL Anatomy3 (contrast CT of thorax and abdomen, 20 organs) is the second data set of the
# scSE paper. Here: VISCERAL-like CT phantoms from `segattn.data.phantoms` (Hounsfield units, all
# 20 organs, anisotropic voxels, some organs left unannotated as in the real data), the CT
# windows a radiologist would use, a short 3D U-Net + scSE training run on patches, inference on
# a larger volume within a fixed memory budget, and organ overlays in three planes.

# %% tags=["parameters"]
import os
from pathlib import Path

FAST = os.environ.get("SEGATTN_NOTEBOOK_FAST") == "1"
OUT = Path(os.environ.get("SEGATTN_NOTEBOOK_OUT", "notebook_outputs/05_whole_body_ct"))
CASES = 4 if FAST else 8  # phantoms for training/validation
SIZE = 32 if FAST else 64  # in-plane voxels of the training phantoms
PATCH = [16, 16, 16] if FAST else [48, 48, 32]
EPOCHS = 1 if FAST else 10
FEATURES = [8, 16] if FAST else [16, 32, 64]
LARGE_SIZE = 48 if FAST else 160  # in-plane voxels of the large inference volume
MAX_MEMORY_GB = 0.02 if FAST else 0.25  # working-buffer budget of the bounded-memory Predictor
WINDOW = [-160, 240]  # soft-tissue window used for training (HU)
SEED = 0

# %%
import logging
import time
import warnings

import lightning.pytorch as pl
import matplotlib.pyplot as plt
import nibabel as nib
import numpy as np
import pandas as pd
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from segattn.data.phantoms import VISCERAL_LABELS, make_visceral_case, make_visceral_dataset
from segattn.inference import Predictor
from segattn.training import SegDataModule, SegmentationSystem
from segattn.viz import label_colormap

OUT.mkdir(parents=True, exist_ok=True)
DATA = OUT / "data"
logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
warnings.filterwarnings("ignore", ".*does not have many workers.*")
torch.set_num_threads(2)
make_visceral_dataset(DATA, cases=CASES, size=SIZE, seed=SEED, overwrite=True)
first = sorted((DATA / "imagesTr").glob("*.nii.gz"))[0]
ct = nib.as_closest_canonical(nib.load(first))
print(first.name, ct.shape, "voxel size (mm):", np.round(ct.header.get_zooms(), 2))

# %% [markdown]
# ## Windowing
#
# CT intensities are Hounsfield units, -1000 (air) to over +1000 (bone). A window `[lo, hi]`
# clips and rescales them; training uses the soft-tissue window `WINDOW` (the preprocessing's
# `{"kind": "ct", "window": [lo, hi]}`), which separates liver, spleen, kidneys and vessels.

# %%
hu = np.asarray(ct.dataobj, dtype=np.float32)
z = hu.shape[2] // 2
windows = {"raw HU": None, "soft tissue": WINDOW, "lung": [-1000, 200], "bone": [-200, 1200]}
fig, axes = plt.subplots(1, len(windows), figsize=(3.2 * len(windows), 3.4))
for ax, (title, window) in zip(axes, windows.items()):
    lo, hi = (hu.min(), hu.max()) if window is None else window
    ax.imshow(np.clip(hu[:, :, z], lo, hi).T, cmap="gray", vmin=lo, vmax=hi, origin="lower")
    ax.set_title(f"{title} [{lo:.0f}, {hi:.0f}]", fontsize=9)
    ax.axis("off")
fig.tight_layout()
fig.savefig(OUT / "windows.png", dpi=70)

# %% [markdown]
# ## A short 3D training run
#
# 3D patches centred on foreground two times out of three, a 3D U-Net with scSE after every
# conv block, Dice + cross-entropy.

# %%
pl.seed_everything(SEED, workers=True, verbose=False)
dm = SegDataModule(
    str(DATA),
    mode="3d",
    patch_size=PATCH,
    batch_size=2,
    val_fraction=0.25,
    seed=SEED,
    intensity={"kind": "ct", "window": WINDOW},
)
system = SegmentationSystem.for_data(dm, features=FEATURES, attention="scse", sw_batch_size=2)
checkpoint = ModelCheckpoint(dirpath=OUT / "checkpoints", monitor="val/mean_dice", mode="max", filename="best")
trainer = pl.Trainer(
    accelerator="cpu",
    max_epochs=EPOCHS,
    callbacks=[checkpoint],
    logger=False,
    enable_progress_bar=False,
    enable_model_summary=False,
    num_sanity_val_steps=0,
)
start = time.perf_counter()
trainer.fit(system, datamodule=dm)
print(f"trained {EPOCHS} epoch(s) in {time.perf_counter() - start:.0f} s; "
      f"best validation mean Dice {float(checkpoint.best_model_score):.3f}")

# %% [markdown]
# ## Bounded-memory inference on a larger volume
#
# A larger phantom (`LARGE_SIZE` in-plane voxels) is predicted by the `Predictor`'s slab method:
# sliding windows are produced slab by slab, resampled back to the input grid slab by slab and
# turned into labels there, so the working buffers stay within `MAX_MEMORY_GB` instead of the
# `4 * classes * voxels` bytes of whole-volume float32 probabilities.

# %%
large = make_visceral_case(SEED + 1000, size=LARGE_SIZE)
large_path = OUT / "large_0000.nii.gz"
nib.save(nib.Nifti1Image(large.image, large.affine), large_path)
predictor = Predictor(checkpoint.best_model_path, device="cpu", progress=False, max_memory=MAX_MEMORY_GB)
start = time.perf_counter()
labels, label_img = predictor.predict_image(large_path)
seconds = time.perf_counter() - start
whole = 4 * predictor.num_classes * large.image.size / 1e9
summary = pd.Series(
    {
        "volume (voxels)": "x".join(map(str, large.image.shape)),
        "classes": predictor.num_classes,
        "working-buffer budget (GB)": MAX_MEMORY_GB,
        "whole-volume float32 probabilities would need (GB)": round(whole, 3),
        "prediction time (s)": round(seconds, 1),
        "labels on the input grid": labels.shape == large.image.shape,
    }
)
print(summary.to_string())

# %% [markdown]
# ## Organ overlays in three planes
#
# The large volume's reference organs and the prediction, in RAS display order, through the
# centre of the annotated organs.

# %%
canonical = lambda v: np.asarray(nib.as_closest_canonical(nib.Nifti1Image(v, large.affine)).dataobj)
image, truth, predicted = canonical(large.image), canonical(large.label), canonical(labels)
dx, dy, dz = nib.as_closest_canonical(nib.Nifti1Image(large.image, large.affine)).header.get_zooms()[:3]
aspects = [dz / dy, dz / dx, dy / dx]  # pixel height / width of each plane
centre = np.argwhere(truth > 0).mean(0).round().astype(int)
colours = label_colormap(len(VISCERAL_LABELS))
lo, hi = WINDOW


def planes(volume):
    x, y, zz = centre
    return [volume[x].T, volume[:, y].T, volume[:, :, zz].T]


fig, axes = plt.subplots(2, 3, figsize=(10, 6.6))
for row, (title, lab) in enumerate((("reference", truth), ("prediction", predicted))):
    for col, (img, slab, plane) in enumerate(zip(planes(image), planes(lab), ("sagittal", "coronal", "axial"))):
        ax = axes[row, col]
        ax.imshow(np.clip(img, lo, hi), cmap="gray", vmin=lo, vmax=hi, origin="lower", aspect=aspects[col])
        rgba = colours[slab.astype(int)]
        rgba[..., 3] = np.where(slab > 0, 0.5, 0.0)
        ax.imshow(rgba, origin="lower", aspect=aspects[col], interpolation="nearest")
        ax.set_title(f"{plane}: {title}", fontsize=9)
        ax.axis("off")
fig.tight_layout()
fig.savefig(OUT / "organs.png", dpi=70)

# %% [markdown]
# The organ list of the phantoms (the VISCERAL RadLex structures):

# %%
pd.Series(VISCERAL_LABELS).to_frame("label value").T
