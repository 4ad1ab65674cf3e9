"""Checkpoint loading: safe (weights_only), validated, rebuilding the stored network."""

from __future__ import annotations

import pathlib
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from inference_helpers import LABELS, checkpoint_meta, save_checkpoint

from segattn.errors import InputFileError
from segattn.inference import load_checkpoint


class Payload:
    """Unpickling this would create a marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


def test_load_valid_checkpoint_rebuilds_net(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "m.ckpt", checkpoint_meta(mode="2d"))
    info = load_checkpoint(path)
    assert info.labels == LABELS
    assert (info.mode, info.slice_axis, info.spatial_dims) == ("2d", 1, 2)  # null -> coronal
    assert info.num_classes == 3 and info.in_channels == 1
    assert info.preprocessing["intensity"]["kind"] == "zscore"
    assert not any(k.startswith("loss.") for k in info.state_dict)
    net = info.build_net()
    assert not net.training
    out = net(torch.rand(2, 1, 17, 19))
    assert out.shape == (2, 3, 17, 19)


def test_pickled_payload_is_refused_without_running(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    path = tmp_path / "evil.ckpt"
    torch.save({"segattn": Payload(marker), "state_dict": {}}, path)
    with pytest.raises(InputFileError, match="refused") as err:
        load_checkpoint(path)
    assert str(path) in str(err.value)
    assert not marker.exists()


def _nifti(path: Path) -> Path:
    nib.save(nib.Nifti1Image(np.zeros((3, 3, 3), np.float32), np.eye(4)), path)
    return path


@pytest.mark.parametrize(
    "make, problem",
    [
        (lambda p: p.write_bytes(b"not a checkpoint at all" * 20), "not a PyTorch checkpoint"),
        (lambda p: p.write_bytes(b""), "not a PyTorch checkpoint"),
        (lambda p: _nifti(p.with_suffix(".nii.gz")).rename(p), "not a PyTorch checkpoint"),
        (lambda p: torch.save({"state_dict": {}}, p), "no 'segattn' metadata"),
        (lambda p: torch.save([1, 2], p), "not a segattn checkpoint"),
        (lambda p: p.write_bytes(_truncated()), "not a PyTorch checkpoint"),
    ],
)
def test_not_a_checkpoint(tmp_path: Path, make, problem: str) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "bad.ckpt"
    make(path)
    with pytest.raises(InputFileError, match=problem) as err:
        load_checkpoint(path)
    assert str(err.value).startswith(str(path))


def _truncated() -> bytes:
    import io

    buf = io.BytesIO()
    torch.save({"state_dict": {"net.w": torch.zeros(100)}, "segattn": {}}, buf)
    data = buf.getvalue()
    return data[: len(data) // 2]


def test_missing_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="not found"):
        load_checkpoint(tmp_path / "nope.ckpt")


@pytest.mark.parametrize(
    "edit, problem",
    [
        (lambda m: m.update(version=2), "unsupported version 2"),
        (lambda m: m.update(labels={"bg": 0, "a": 2, "b": 3}), "without gaps"),
        (lambda m: m.update(mode="4d"), "mode must be"),
        (lambda m: m.update(mode="2d"), "spatial_dims"),
        (lambda m: m["net"].update(name="resnet"), "unknown network"),
        (lambda m: m.update(patch_size=[8, 8]), "patch_size"),
        (lambda m: m.update(preprocessing={"intensity": {"kind": "magic"}}), "intensity"),
        (lambda m: m.pop("labels"), "missing key 'labels'"),
    ],
)
def test_invalid_metadata(tmp_path: Path, edit, problem: str) -> None:  # type: ignore[no-untyped-def]
    meta = checkpoint_meta()
    path = save_checkpoint(tmp_path / "m.ckpt", meta)
    raw = torch.load(path, weights_only=True)
    edit(raw["segattn"])
    torch.save(raw, path)
    with pytest.raises(InputFileError, match=problem):
        load_checkpoint(path)


def test_weights_that_do_not_fit_the_net(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "m.ckpt", checkpoint_meta())
    raw = torch.load(path, weights_only=True)
    raw["segattn"]["net"]["kwargs"]["features"] = [4, 16]
    torch.save(raw, path)
    info = load_checkpoint(path)
    with pytest.raises(InputFileError, match="weights do not match"):
        info.build_net()


def test_parameters_outside_the_net_prefix_are_ignored(tmp_path: Path) -> None:
    """Training systems may add modules (e.g. SE-loss heads) beside ``net.``: not loaded."""
    meta = checkpoint_meta()
    path = save_checkpoint(tmp_path / "m.ckpt", meta)
    raw = torch.load(path, weights_only=True)
    raw["state_dict"]["se_loss_heads.0.weight"] = torch.randn(3, 8)
    raw["state_dict"]["se_loss_heads.0.bias"] = torch.randn(3)
    torch.save(raw, path)
    info = load_checkpoint(path)
    assert all(not k.startswith("se_loss") for k in info.state_dict)
    info.build_net()  # strict load of the network's own weights still succeeds
