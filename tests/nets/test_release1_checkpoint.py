"""A checkpoint written by the first release (before the network registry) still loads, rebuilds
the same U-Net and predicts the labels that release predicted (data/make_release1_checkpoint.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from segattn.inference import Predictor, load_checkpoint
from segattn.nets import UNet
from segattn.training import SegmentationSystem

DATA = Path(__file__).parent / "data"


def test_first_release_checkpoint_predicts_the_same_labels() -> None:
    path = DATA / "release1_unet2d_scse.ckpt"
    raw = torch.load(path, map_location="cpu", weights_only=True)
    assert raw["segattn"]["version"] == 1 and raw["segattn"]["net"]["name"] == "unet"
    assert any(k.startswith("net.bottleneck_attention.") for k in raw["state_dict"])
    info = load_checkpoint(path)
    assert info.net_name == "unet" and info.num_classes == 33
    net = info.build_net()
    assert isinstance(net, UNet)
    assert net.padding == "input"  # saved before the option: the input was padded
    assert list(net.attention_modules())[:2] == ["encoder.0", "bottleneck"]
    expected = np.load(DATA / "release1_unet2d_scse.npz")
    with torch.no_grad():
        labels = net(torch.from_numpy(expected["image"])).argmax(1)
    assert np.array_equal(labels.numpy(), expected["labels"])
    assert len(np.unique(expected["labels"])) > 3  # a prediction that can tell nets apart
    assert Predictor(path, device="cpu", progress=False).labels == info.labels


def test_first_release_checkpoint_resumes_as_a_system() -> None:
    """Its hyper-parameters (U-Net options at the top level of ``model``) still build the system."""
    system = SegmentationSystem.load_from_checkpoint(DATA / "release1_unet2d_scse.ckpt")
    assert system.net_name == "unet" and isinstance(system.net, UNet)
    assert system.net.padding == "input"
    assert system.inference_meta()["net"]["kwargs"]["padding"] == "input"
    expected = np.load(DATA / "release1_unet2d_scse.npz")
    with torch.no_grad():
        labels = system.net.eval()(torch.from_numpy(expected["image"])).argmax(1)
    assert np.array_equal(labels.numpy(), expected["labels"])
