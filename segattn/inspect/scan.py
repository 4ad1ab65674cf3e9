"""A checkpoint's attention gates for one scan, on the scan's own voxel grid.

The scan goes through the checkpoint's preprocessing exactly as in
:class:`segattn.inference.Predictor` (load, orient, optionally resample, normalise); the network
runs once per slice (2D models, along the trained axis) or once on the whole preprocessed volume
(3D models: no sliding window, so the gates of one pass cover the scan); each spatial gate is
upsampled to the preprocessed grid (:func:`segattn.inspect.to_image_grid`) and mapped back to the
scan's grid by the Predictor's own inverse transform (MONAI ``Invertd``, linear interpolation).

Gates with one map per channel (``coord``, ``pe``, ``bilinear``: ``(N, C, *spatial)``) are
averaged over channels, so every block gives one 3D map. Channel gates of 2D models are averaged
over the slices.

Example::

    predictor = Predictor("model.ckpt", device="cpu", progress=False)
    explanation = explain_scan(predictor, "imagesTs/CASE_0000.nii.gz")
    write_explanation(explanation, "explain/CASE")
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from torch import Tensor

from segattn.data.transforms import plain_tensor, preprocess_transforms
from segattn.errors import InputFileError
from segattn.fileio import save_nifti_atomic, write_text_atomic
from segattn.inference import Predictor
from segattn.inference.io import load_nifti_header
from segattn.inference.preprocess import run_preprocessing
from segattn.inspect.capture import attention_hooks, to_image_grid

__all__ = ["Explanation", "ScanGate", "explain_scan", "write_explanation"]

PathLike = str | Path


@dataclass(frozen=True)
class ScanGate:
    """One attention module's gates for a scan.

    Attributes:
        block: key in the network's ``attention_modules()``.
        name: attention registry name.
        spatial: float32 ``(X, Y, Z)`` on the scan's grid (mean over channels for per-channel
            maps), or None.
        channel: float32 ``(C,)`` (mean over slices for 2D models), or None.
        per_channel_map: the module's spatial gate had one map per channel (averaged here).
    """

    block: str
    name: str
    spatial: np.ndarray | None
    channel: np.ndarray | None
    per_channel_map: bool = False


@dataclass(frozen=True)
class Explanation:
    """A scan, the checkpoint's labels for it and the gates of every selected block.

    Attributes:
        scan: float32 ``(X, Y, Z)`` intensities of the scan (channel 0).
        reference: the scan's NIfTI image (header and affine of every output).
        labels: integer ``(X, Y, Z)`` prediction on the scan's grid.
        label_names: structure name -> class index.
        gates: one entry per block, forward order.
    """

    scan: np.ndarray
    reference: nib.Nifti1Image
    labels: np.ndarray
    label_names: dict[str, int]
    gates: list[ScanGate]


def explain_scan(
    predictor: Predictor,
    image: PathLike | Sequence[PathLike],
    blocks: Sequence[str] | None = None,
    slice_batch: int = 16,
) -> Explanation:
    """Capture the gates of the predictor's (single) model on one scan, on the scan's grid.

    Args:
        predictor: a :class:`Predictor` with one checkpoint.
        image: one file, or the channel files in channel order (as :meth:`Predictor.predict_image`).
        blocks: keys of ``attention_modules()`` to keep; None keeps all.
        slice_batch: slices per forward pass for 2D models.

    Returns:
        the :class:`Explanation`.

    Raises:
        InputFileError: as :meth:`Predictor.predict_image` (unreadable file, wrong channels, ...).
        ValueError: several checkpoints, or an unknown block.
    """
    if len(predictor.models) != 1:
        raise ValueError(f"explain takes one checkpoint, got {len(predictor.models)}")
    paths = [Path(image)] if isinstance(image, str | Path) else [Path(p) for p in image]
    labels, _ = predictor.predict_image(paths)
    model = predictor.models[0]
    info = model.info
    chain = preprocess_transforms(info.preprocessing, keys=("image",))
    data = run_preprocessing(chain, paths)
    volume = plain_tensor(data["image"]).float().to(predictor.device)  # (C, *preprocessed)
    with torch.no_grad():
        records = _records(model.net, volume, info.mode, info.slice_axis, blocks, slice_batch)
    gates = []
    for block, (name, spatial, channel, per_channel) in records.items():
        on_scan = None
        if spatial is not None:
            # the Predictor's own inverse path: preprocessed grid -> scan grid
            back = predictor._to_input_grid(chain, data, spatial.cpu(), True)
            on_scan = back[0].numpy().astype(np.float32)
        channels = None if channel is None else channel.cpu().numpy().astype(np.float32)
        gates.append(ScanGate(block, name, on_scan, channels, per_channel))
    reference = load_nifti_header(paths[0])
    scan = np.asarray(reference.dataobj, dtype=np.float32)
    scan = scan if scan.ndim == 3 else scan[..., 0]
    return Explanation(scan, reference, np.asarray(labels), dict(predictor.labels), gates)


def _records(
    net: torch.nn.Module,
    volume: Tensor,
    mode: str,
    slice_axis: int | None,
    blocks: Sequence[str] | None,
    slice_batch: int,
) -> dict[str, tuple[str, Tensor | None, Tensor | None, bool]]:
    """Block -> (name, spatial ``(1, *preprocessed)`` (mean over channels) on the volume's grid,
    channel ``(C,)``, whether the spatial gate had one map per channel)."""
    net.eval()
    names: dict[str, str] = {}
    maps: dict[str, list[Tensor]] = {}
    channels: dict[str, list[Tensor]] = {}
    per_channel: dict[str, bool] = {}
    if mode == "3d":
        batches, size = [volume[None]], tuple(volume.shape[1:])
    else:
        assert slice_axis is not None
        slices = torch.movedim(volume, 1 + slice_axis, 0)  # (S, C, a, b)
        batches = [slices[i : i + slice_batch] for i in range(0, slices.shape[0], slice_batch)]
        size = tuple(slices.shape[2:])
    with attention_hooks(net, blocks) as found:
        for batch in batches:
            net(batch)
            # reduce each batch at once: channel means, upsampled; no per-channel volume kept
            for record in found:
                names[record.block] = record.name
                if record.spatial is not None:
                    per_channel[record.block] = record.spatial.shape[1] > 1
                    mean = record.spatial.float().mean(1, keepdim=True)
                    maps.setdefault(record.block, []).append(to_image_grid(mean, size))
                if record.channel is not None:
                    channels.setdefault(record.block, []).append(record.channel.float())
            found.clear()
    out = {}
    for block, name in names.items():
        spatial = channel = None
        if block in maps:
            stacked = torch.cat(maps[block])  # 3D: (1, 1, X, Y, Z); 2D: (S, 1, a, b)
            if mode == "3d":
                spatial = stacked[0]
            else:  # slices back in place: (1, X, Y, Z)
                spatial = torch.movedim(stacked, 0, 1 + (slice_axis or 0))
        if block in channels:
            channel = torch.cat(channels[block]).mean(0)
        out[block] = (name, spatial, channel, per_channel.get(block, False))
    return out


def write_explanation(
    explanation: Explanation, folder: PathLike, montage: bool = True
) -> list[Path]:
    """Write ``gate_<block>.nii.gz`` (spatial gates, float32, the scan's header),
    ``prediction.nii.gz``, ``channel_gates.csv`` (``block,name,channel,gate``) and
    ``montage.png`` into ``folder``, each atomically.

    Returns:
        the written files.

    Raises:
        InputFileError: a file cannot be written.
    """
    from segattn.inspect.montage import save_montage

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    ref = explanation.reference
    written = []
    try:
        for gate in explanation.gates:
            if gate.spatial is None:
                continue
            header = ref.header.copy()
            header.set_data_dtype(np.float32)
            img = nib.Nifti1Image(gate.spatial.astype(np.float32), ref.affine, header)
            target = out / f"gate_{gate.block}.nii.gz"
            save_nifti_atomic(img, target)
            written.append(target)
        header = ref.header.copy()
        labels = explanation.labels
        header.set_data_dtype(labels.dtype)
        target = out / "prediction.nii.gz"
        save_nifti_atomic(nib.Nifti1Image(labels, ref.affine, header), target)
        written.append(target)
        target = out / "channel_gates.csv"
        write_text_atomic(target, _channel_csv(explanation.gates))
        written.append(target)
        if montage:
            written.append(save_montage(explanation, out / "montage.png"))
    except OSError as err:
        raise InputFileError(out, f"cannot write: {err.strerror or err}") from err
    return written


def _channel_csv(gates: Sequence[ScanGate]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["block", "name", "channel", "gate"])
    for gate in gates:
        if gate.channel is not None:
            for index, value in enumerate(gate.channel):
                writer.writerow([gate.block, gate.name, index, f"{float(value):.6g}"])
    return buffer.getvalue()
