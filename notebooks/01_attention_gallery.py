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
# # 01 · Attention gallery: every registered module on a real MRI slice
#
# Every attention mechanism of `segattn.attention` is applied to the same features of a real
# T1-weighted brain MRI: the MNI152 template that ships inside the nilearn wheel (no download).
# For each module we show **what it computes** (from the registry and its docstring), **the
# gate(s) it applies** (captured through the gate contract with `segattn.inspect.module_gates`),
# and **its cost**: parameters and forward time per module, in 2D and in 3D.
#
# The modules are freshly initialised (untrained), so the gates show the *mechanics* of each
# mechanism — what a gate can depend on (global statistics only, position, axis profiles) — not
# what a trained network learns; notebook 03 shows trained gates.

# %% tags=["parameters"]
import os
from pathlib import Path

FAST = os.environ.get("SEGATTN_NOTEBOOK_FAST") == "1"
OUT = Path(os.environ.get("SEGATTN_NOTEBOOK_OUT", "notebook_outputs/01_attention_gallery"))
CHANNELS = 16  # feature width (fca needs a multiple of 16)
SIZE_2D = 48 if FAST else 112  # the axial slice is resized to SIZE_2D x SIZE_2D
SIZE_3D = 16 if FAST else 48  # the volume is resized to SIZE_3D^3
REPEATS = 1 if FAST else 10  # forward passes timed per module (median reported)
SEED = 0

# %%
import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from nilearn.datasets import load_mni152_template

from segattn import attention
from segattn.inspect import module_gates
from segattn.nets import ConvBlock

OUT.mkdir(parents=True, exist_ok=True)
torch.manual_seed(SEED)
torch.set_num_threads(2)

# %% [markdown]
# ## The scan and its features
#
# The MNI152 T1 template at 2 mm, z-scored inside the head. A fixed, seeded conv block
# (`segattn.nets.ConvBlock`: two conv-norm-LeakyReLU layers, `1 -> CHANNELS`) turns the slice
# (and the volume) into `CHANNELS` feature maps, the kind of input an attention module sees
# after the first conv block of a U-Net.

# %%
template = load_mni152_template(resolution=2)
volume = np.asarray(template.get_fdata(), dtype=np.float32)
head = volume > 0
volume = np.where(head, (volume - volume[head].mean()) / volume[head].std(), 0.0)
print("template", template.shape, "voxels of", template.header.get_zooms(), "mm")

vol = torch.from_numpy(volume.astype(np.float32))[None, None]  # (1, 1, X, Y, Z)
axial = vol[..., volume.shape[2] // 2 + 5]  # (1, 1, X, Y): an axial slice through the ventricles
image_2d = F.interpolate(axial, size=(SIZE_2D, SIZE_2D), mode="bilinear", align_corners=False)
image_3d = F.interpolate(vol, size=(SIZE_3D,) * 3, mode="trilinear", align_corners=False)

stems = {d: ConvBlock(d, 1, CHANNELS).eval() for d in (2, 3)}
with torch.no_grad():
    features = {2: stems[2](image_2d), 3: stems[3](image_3d)}
{d: tuple(f.shape) for d, f in features.items()}

# %% [markdown]
# ## What each module computes
#
# The registry knows each module's paper; the first line of its docstring says what it does.

# %%
rows = []
for name in attention.available():
    entry = attention.info(name)
    doc = (entry.cls.__doc__ or "").strip().splitlines()[0]
    rows.append({"name": name, "computes": doc, "paper": entry.paper, "options": entry.defaults})
pd.set_option("display.max_colwidth", 90)
pd.DataFrame(rows).set_index("name")

# %% [markdown]
# ## The gates on the slice (2D) and on the volume (3D, middle axial slice)
#
# One panel per module. A **spatial** gate (`sse`, the spatial half of `scse`/`cbam`/`bam`, the
# full gates of `coord`, `pe`, `bilinear`, averaged over channels) is drawn as a map; a
# **channel** gate as one bar per channel. `sk` and `enc` apply no single factor to their input
# (SK mixes two branches, EncNet ends in a ReLU), so they have no panel content.


# %%
def gates_of(name, spatial_dims):
    module = attention.create(name, CHANNELS, spatial_dims).eval()
    with torch.no_grad():
        return module_gates(module, features[spatial_dims])


def draw_gallery(spatial_dims, path):
    names = attention.available()
    cols = 5
    rows_ = -(-len(names) // cols)
    fig, axes = plt.subplots(rows_, cols, figsize=(3.0 * cols, 2.9 * rows_))
    for ax, name in zip(axes.ravel(), names):
        channel, spatial = gates_of(name, spatial_dims)
        if spatial is not None:
            g = spatial[0].mean(0)  # (*spatial), mean over channels if per-channel
            if spatial_dims == 3:
                g = g[..., g.shape[-1] // 2]
            im = ax.imshow(g.T.numpy(), origin="lower", cmap="magma")
            fig.colorbar(im, ax=ax, fraction=0.046)
            if channel is not None:  # both gates: the channel gate as an inset
                inset = ax.inset_axes((0.0, -0.32, 1.0, 0.25))
                inset.bar(range(CHANNELS), channel[0].numpy(), color="tab:blue")
                inset.set_ylim(0, 1)
                inset.set_xticks([])
        elif channel is not None:
            ax.bar(range(CHANNELS), channel[0].numpy(), color="tab:blue")
            ax.set_xlabel("channel")
        else:
            ax.text(0.5, 0.5, "no gate", ha="center", va="center", fontsize=12)
            ax.axis("off")
        kind = "+".join(k for k, v in (("channel", channel), ("spatial", spatial)) if v is not None)
        ax.set_title(f"{name} ({kind or 'none'})", fontsize=9)
        if spatial is not None:
            ax.axis("off")
    for ax in axes.ravel()[len(names) :]:
        ax.axis("off")
    fig.suptitle(f"attention gates on MNI152 features, {spatial_dims}D", y=1.0)
    fig.tight_layout()
    fig.savefig(path, dpi=70)
    return fig


draw_gallery(2, OUT / "gates_2d.png");

# %%
draw_gallery(3, OUT / "gates_3d.png");

# %% [markdown]
# ## Parameters and time per module
#
# Parameters at `C = CHANNELS`; time is the median wall time of `REPEATS` forward passes on the
# features above (CPU, 2 threads, eval mode, no gradient), all modules timed in turn within each
# repeat. Timings depend on the machine and its load; compare modules with each other, measured
# in this one run.


# %%
modules = {(name, d): attention.create(name, CHANNELS, d).eval() for name in attention.available() for d in (2, 3)}
times = {key: [] for key in modules}
with torch.no_grad():
    for (name, d), module in modules.items():
        module(features[d])  # warm-up
    # interleaved: every repeat times every module once, so a change of machine load during
    # the run affects all modules alike
    for _ in range(REPEATS):
        for (name, d), module in modules.items():
            start = time.perf_counter()
            module(features[d])
            times[(name, d)].append(time.perf_counter() - start)
cost = pd.DataFrame(
    {
        name: {
            "params_2d": sum(p.numel() for p in modules[(name, 2)].parameters()),
            "params_3d": sum(p.numel() for p in modules[(name, 3)].parameters()),
            "ms_2d": 1000 * float(np.median(times[(name, 2)])),
            "ms_3d": 1000 * float(np.median(times[(name, 3)])),
        }
        for name in attention.available()
    }
).T
cost = cost.astype({"params_2d": int, "params_3d": int})
cost.index.name = "name"
cost.to_csv(OUT / "cost.csv")
cost.round(3)

# %%
fig, axes = plt.subplots(1, 2, figsize=(13, 4.5))
cost[["params_2d", "params_3d"]].plot.bar(ax=axes[0], logy=True)
axes[0].set_title(f"parameters at C = {CHANNELS}")
cost[["ms_2d", "ms_3d"]].plot.bar(ax=axes[1], logy=True)
axes[1].set_title(f"forward time (ms): {SIZE_2D}² slice, {SIZE_3D}³ volume")
fig.tight_layout()
fig.savefig(OUT / "cost.png", dpi=70)

# %% [markdown]
# Reading the figures: channel modules (`se`, `cse`, `eca`, `gct`, ...) give one number per
# channel and cannot tell positions apart; `sse` is one map shared by all channels; `coord`
# factors its gate into one profile per axis (stripes); `pe` sums per-axis projections before
# its excitation; `scse`, `cbam` and `bam` combine both kinds. In 3D the parameter counts of the
# modules with spatial convolutions grow with the kernel volume (`cbam` 7³, `bam` 3³ dilated),
# while pure channel gates cost the same in 2D and 3D.
