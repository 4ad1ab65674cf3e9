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
# # 03 · Attention maps: where sSE lights up, which channels cSE turns down
#
# Roy et al. (IEEE TMI 2019, https://arxiv.org/abs/1808.08127) look inside their trained
# networks: sSE maps per block and cSE activations per structure. This notebook does the same
# with `segattn.inspect`:
#
# 1. train three small 2D U-Nets on MALC-like phantoms, with `cse`, `sse` and `scse`;
# 2. capture the gates of the scSE model on a held-out scan and put every block's spatial gate on
#    the scan's own grid (`explain_scan`, what `segattn explain` writes);
# 3. average the bottleneck's channel gates over the slices that contain each structure: a
#    structure x channel heatmap;
# 4. compare cSE, sSE and scSE side by side on one slice.

# %% tags=["parameters"]
import os
from pathlib import Path

FAST = os.environ.get("SEGATTN_NOTEBOOK_FAST") == "1"
OUT = Path(os.environ.get("SEGATTN_NOTEBOOK_OUT", "notebook_outputs/03_attention_maps"))
CASES = 4 if FAST else 10
TEST_CASES = 1 if FAST else 3
SIZE = 24 if FAST else 64
EPOCHS = 1 if FAST else 5
FEATURES = [8, 16] if FAST else [16, 32, 64]
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
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from segattn.data.phantoms import make_malc_dataset
from segattn.data.transforms import plain_tensor, preprocess_transforms
from segattn.inference import Predictor
from segattn.inspect import capture_attention, explain_scan, to_image_grid

OUT.mkdir(parents=True, exist_ok=True)
DATA = OUT / "data"
logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
warnings.filterwarnings("ignore", ".*does not have many workers.*")
torch.set_num_threads(2)
make_malc_dataset(DATA, cases=CASES, size=SIZE, seed=SEED, test_cases=TEST_CASES, overwrite=True)

# %% [markdown]
# ## Train cSE, sSE and scSE models (briefly)
#
# Same data, seed, widths and schedule; only the attention module differs.


# %%
def train(attention):
    from segattn.training import SegDataModule, SegmentationSystem

    pl.seed_everything(SEED, workers=True, verbose=False)
    dm = SegDataModule(str(DATA), mode="2d", slice_axis="coronal", batch_size=BATCH_SIZE, val_fraction=0.25, seed=SEED)
    system = SegmentationSystem.for_data(
        dm,
        features=FEATURES,
        attention=attention,
        optimizer=lambda params: torch.optim.AdamW(params, lr=LR, weight_decay=1e-5),
    )
    checkpoint = ModelCheckpoint(dirpath=OUT / attention, monitor="val/mean_dice", mode="max", filename="best")
    trainer = pl.Trainer(
        accelerator="cpu",
        max_epochs=EPOCHS,
        callbacks=[checkpoint],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(system, datamodule=dm)
    print(f"{attention}: best validation mean Dice {float(checkpoint.best_model_score):.3f}")
    return Predictor(checkpoint.best_model_path, device="cpu", progress=False)


models = {name: train(name) for name in ("cse", "sse", "scse")}

# %% [markdown]
# ## Every block's spatial gate on a held-out scan
#
# `explain_scan` runs the checkpoint's preprocessing, captures every block's gates slice by
# slice, upsamples each spatial gate to the slice and maps it back to the scan's grid with the
# Predictor's inverse transform. Shown: the coronal slice through the centre of the predicted
# brain; each panel has its own colour scale.

# %%
scan_path = sorted((DATA / "imagesTs").glob("*.nii.gz"))[0]
label_path = DATA / "labelsTs" / scan_path.name.replace("_0000", "")
explanation = explain_scan(models["scse"], scan_path)
canonical = lambda v: np.asarray(nib.as_closest_canonical(nib.Nifti1Image(v, explanation.reference.affine)).dataobj)
scan = canonical(explanation.scan)
y = int(np.argwhere(canonical(explanation.labels) > 0)[:, 1].mean())
spatial = [g for g in explanation.gates if g.spatial is not None]
fig, axes = plt.subplots(1, len(spatial) + 1, figsize=(2.6 * (len(spatial) + 1), 3))
axes[0].imshow(scan[:, y].T, cmap="gray", origin="lower")
axes[0].set_title("scan (coronal)", fontsize=9)
for ax, gate in zip(axes[1:], spatial):
    ax.imshow(scan[:, y].T, cmap="gray", origin="lower")
    im = ax.imshow(canonical(gate.spatial)[:, y].T, cmap="magma", alpha=0.6, origin="lower")
    fig.colorbar(im, ax=ax, fraction=0.046)
    ax.set_title(f"{gate.block}", fontsize=8)
for ax in axes:
    ax.axis("off")
fig.suptitle(f"scSE spatial gates per block, {scan_path.name}")
fig.tight_layout()
fig.savefig(OUT / "block_gates.png", dpi=70)

# %% [markdown]
# ## Channel gates per structure
#
# The scan and its reference labels go through the checkpoint's preprocessing; each coronal
# slice goes through the network once. For every structure, the bottleneck's cSE gate is averaged
# over the slices that contain it; the heatmap shows each channel's deviation from its mean over
# all slices, so channels that a structure turns up (or down) stand out.

# %%
predictor = models["scse"]
info = predictor.models[0].info
net = predictor.models[0].net
chain = preprocess_transforms(info.preprocessing, keys=("image", "label"))
data = chain({"image": str(scan_path), "label": str(label_path)})
image = plain_tensor(data["image"]).float()  # (1, X, Y, Z)
label = plain_tensor(data["label"])[0].long()  # (X, Y, Z)
axis = info.slice_axis
slices = torch.movedim(image, 1 + axis, 0)  # (S, 1, a, b)
slice_labels = torch.movedim(label, axis, 0)  # (S, a, b)
blocks = list(net.attention_modules())
bottleneck = blocks[len(blocks) // 2]  # a U-Net's middle module is its bottleneck
[record] = capture_attention(net, slices, blocks=[bottleneck])
gates = record.channel  # (S, C)
names = {v: k for k, v in predictor.labels.items()}
present = [k for k in range(1, len(names)) if (slice_labels == k).any()]
per_structure = torch.stack([gates[(slice_labels == k).flatten(1).any(1)].mean(0) for k in present])
deviation = (per_structure - gates.mean(0)).numpy()
limit = float(np.abs(deviation).max()) or 1.0
fig, ax = plt.subplots(figsize=(10, 0.22 * len(present) + 1.5))
im = ax.imshow(deviation, cmap="coolwarm", vmin=-limit, vmax=limit, aspect="auto")
ax.set_yticks(range(len(present)), [names[k] for k in present], fontsize=7)
ax.set_xlabel(f"{bottleneck} channel")
ax.set_title("cSE gate of the bottleneck: mean over slices with the structure minus mean over all")
fig.colorbar(im, ax=ax)
fig.tight_layout()
fig.savefig(OUT / "channel_heatmap.png", dpi=70)

# %% [markdown]
# ## cSE, sSE and scSE side by side
#
# The coronal slice through the middle of the brain, first block of each model: the sSE map of
# the `sse` model and the spatial half of `scse` (upsampled to the slice), and the channel gates
# of the `cse` model and the channel half of `scse`.

# %%
middle = int(slice_labels.flatten(1).any(1).nonzero().float().mean())
one = slices[middle : middle + 1]
captured = {}
for name, model in models.items():
    model_net = model.models[0].net
    first = next(iter(model_net.attention_modules()))
    [captured[name]] = capture_attention(model_net, one, blocks=[first])
fig, axes = plt.subplots(1, 4, figsize=(15, 3.4))
axes[0].imshow(one[0, 0].T, cmap="gray", origin="lower")
axes[0].set_title("slice")
for ax, name in zip(axes[1:3], ("sse", "scse")):
    gate = to_image_grid(captured[name].spatial, one.shape[2:])[0, 0]
    im = ax.imshow(gate.T, cmap="magma", origin="lower")
    fig.colorbar(im, ax=ax, fraction=0.046)
    ax.set_title(f"{name}: spatial gate, first block")
for ax in axes[:3]:
    ax.axis("off")
width = captured["cse"].channel.shape[1]
axes[3].bar(np.arange(width) - 0.2, captured["cse"].channel[0], width=0.4, label="cse")
axes[3].bar(np.arange(width) + 0.2, captured["scse"].channel[0], width=0.4, label="scse")
axes[3].set_ylim(0, 1)
axes[3].set_xlabel("channel")
axes[3].set_title("channel gates, first block")
axes[3].legend()
fig.tight_layout()
fig.savefig(OUT / "cse_sse_scse.png", dpi=70)

# %% [markdown]
# What to look for (full setting; longer training sharpens it): sSE maps that separate brain from skull and background in the
# early blocks and follow tissue boundaries in the decoder; cSE gates that differ between small
# deep structures and the large cortex and white matter at the bottleneck. In the fast setting
# (one epoch, used in CI) the gates are close to their initial values.
