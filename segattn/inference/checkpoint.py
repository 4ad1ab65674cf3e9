"""Read a segattn checkpoint safely, validate its metadata and rebuild the network.

A checkpoint is a ``torch.save``d dict (a Lightning checkpoint) holding ``"state_dict"`` (network
weights under the ``"net."`` prefix) and ``"segattn"``, the metadata inference needs
(:class:`CheckpointMeta`, built by :meth:`CheckpointMeta.for_net`)::

    {"version": 1,
     "net": {"name": "quicknat", "kwargs": {...}},         # any name of segattn.nets.available()
     "labels": {"background": 0, "left_cortex": 1, ...},   # name -> 0..K-1
     "channel_names": {"0": "T1"},
     "preprocessing": {...},                               # segattn.data.transforms
     "mode": "2d" | "3d",
     "slice_axis": 0 | 1 | 2 | None,   # 2D: axis of the RAS-oriented volume that is sliced
     "patch_size": [...] | None}       # sliding-window ROI

Files are read with ``torch.load(..., weights_only=True)``: a pickled Python object inside is
refused, never executed.
"""

from __future__ import annotations

import copy
import pickle
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from segattn.data.transforms import normalize_preprocessing
from segattn.errors import InputFileError

CHECKPOINT_VERSION = 1
NET_PREFIX = "net."


@dataclass(kw_only=True)
class CheckpointMeta:
    """The ``checkpoint["segattn"]`` metadata: everything inference needs besides the weights.

    Built in one place, :meth:`for_net` (the training system, ``segattn bench`` and the tests
    use it), stored as plain JSON types by :meth:`to_dict` (so ``torch.load`` with
    ``weights_only=True`` reads it) and validated by :meth:`from_dict`.

    Attributes:
        net_name: registry name of the network (``segattn.nets.available()``).
        net_kwargs: keyword arguments that rebuild the network with ``segattn.nets.create``.
        labels: structure name -> class index, sorted by index, covering 0..K-1.
        channel_names: channel index (as a string) -> modality name.
        preprocessing: normalised preprocessing settings (see ``segattn.data.transforms``).
        mode: ``"2d"`` (slice-wise) or ``"3d"``.
        slice_axis: 2D only, the sliced axis of the preprocessed volume (0, 1 or 2).
        patch_size: sliding-window ROI, or None to run on the whole volume/slice.
        version: format version, :data:`CHECKPOINT_VERSION`.
    """

    net_name: str
    net_kwargs: dict[str, Any]
    labels: dict[str, int]
    channel_names: dict[str, str]
    preprocessing: dict[str, Any]
    mode: str
    slice_axis: int | None
    patch_size: tuple[int, ...] | None
    version: int = CHECKPOINT_VERSION

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    @property
    def in_channels(self) -> int:
        return int(self.net_kwargs["in_channels"])

    @property
    def spatial_dims(self) -> int:
        return 2 if self.mode == "2d" else 3

    @classmethod
    def for_net(
        cls,
        net_name: str,
        net_kwargs: Mapping[str, Any],
        data_meta: Mapping[str, Any] | None = None,
    ) -> CheckpointMeta:
        """The metadata of a network, filling what ``data_meta`` leaves out.

        Args:
            net_name: registry name.
            net_kwargs: the network's ``config`` (must hold ``spatial_dims``, ``in_channels``,
                ``num_classes``).
            data_meta: ``labels``, ``channel_names``, ``preprocessing``, ``mode``,
                ``slice_axis``, ``patch_size`` (``SegDataModule.inference_meta``); labels that do
                not match ``num_classes`` become ``background, label_1, ...``; the mode follows
                ``spatial_dims``, 2D slices axis 1 unless given.

        Raises:
            ValueError: inconsistent values (see :meth:`from_dict`).
        """
        meta = dict(data_meta or {})
        kwargs = dict(net_kwargs)
        num_classes = int(kwargs["num_classes"])
        labels = meta.get("labels") or {}
        names = [n for n, _ in sorted(labels.items(), key=lambda kv: kv[1])]
        if len(names) != num_classes:
            names = ["background"] + [f"label_{i}" for i in range(1, num_classes)]
        is_2d = int(kwargs["spatial_dims"]) == 2
        channels = range(int(kwargs["in_channels"]))
        return cls.from_dict(
            {
                "version": CHECKPOINT_VERSION,
                "net": {"name": net_name, "kwargs": kwargs},
                "labels": {name: i for i, name in enumerate(names)},
                "channel_names": meta.get("channel_names") or {str(i): f"ch{i}" for i in channels},
                "preprocessing": meta.get("preprocessing"),
                "mode": meta.get("mode") or ("2d" if is_2d else "3d"),
                "slice_axis": meta.get("slice_axis", 1 if is_2d else None),
                "patch_size": meta.get("patch_size"),
            }
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types, as stored in ``checkpoint["segattn"]``."""
        return copy.deepcopy(
            {
                "version": self.version,
                "net": {"name": self.net_name, "kwargs": self.net_kwargs},
                "labels": self.labels,
                "channel_names": self.channel_names,
                "preprocessing": self.preprocessing,
                "mode": self.mode,
                "slice_axis": self.slice_axis,
                "patch_size": None if self.patch_size is None else list(self.patch_size),
            }
        )

    @classmethod
    def from_dict(cls, meta: Mapping[str, Any]) -> CheckpointMeta:
        """Validate ``checkpoint["segattn"]`` (this and earlier releases' form).

        Raises:
            KeyError, TypeError, ValueError: missing or inconsistent entries.
        """
        return cls(**_parse_meta(meta))

    def build_network(self) -> nn.Module:
        """The network with fresh weights (``segattn.nets.create(net_name, **net_kwargs)``)."""
        from segattn.nets import create

        return create(self.net_name, **self.net_kwargs)


@dataclass(kw_only=True)
class CheckpointInfo(CheckpointMeta):
    """The validated contents of a checkpoint file: its :class:`CheckpointMeta` plus

    Attributes:
        path: the file it came from.
        state_dict: network weights without the ``"net."`` prefix.
    """

    path: Path
    state_dict: dict[str, torch.Tensor] = field(repr=False)

    @property
    def meta(self) -> CheckpointMeta:
        """The metadata alone."""
        names = [f.name for f in fields(CheckpointMeta)]
        return CheckpointMeta(**{n: getattr(self, n) for n in names})

    def build_net(self) -> nn.Module:
        """The network with its weights loaded, in eval mode, on the CPU.

        Raises:
            InputFileError: the weights do not fit the network the metadata describes.
        """
        try:
            net = self.build_network()
        except (TypeError, ValueError) as err:
            raise InputFileError(self.path, f"cannot build the network: {err}") from err
        try:
            net.load_state_dict(self.state_dict, strict=True)
        except RuntimeError as err:
            first = str(err).strip().splitlines()
            detail = " ".join(line.strip() for line in first[:3])
            raise InputFileError(
                self.path, f"weights do not match the network in the checkpoint: {detail}"
            ) from err
        return net.eval()


def load_checkpoint(path: str | Path) -> CheckpointInfo:
    """Load and validate a checkpoint without executing any code stored in it.

    Raises:
        InputFileError: missing/unreadable file, not a PyTorch checkpoint, pickled objects
            (refused by ``weights_only=True``), no ``"segattn"`` metadata, or invalid metadata.
    """
    path = Path(path)
    if not path.is_file():
        raise InputFileError(path, "checkpoint not found" if not path.exists() else "not a file")
    if not zipfile.is_zipfile(path):
        raise InputFileError(path, "not a PyTorch checkpoint (not a torch.save zip archive)")
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise InputFileError(
            path,
            "refused to load: the file holds pickled Python objects beyond tensors and plain "
            "containers (read with weights_only=True, nothing was executed)",
        ) from err
    except Exception as err:  # torch.load raises many types on damaged archives
        raise InputFileError(
            path, f"not a readable PyTorch checkpoint ({_first_line(err)})"
        ) from err
    if not isinstance(raw, Mapping):
        raise InputFileError(path, f"not a segattn checkpoint (top level is {type(raw).__name__})")
    if "segattn" not in raw:
        raise InputFileError(path, "not a segattn checkpoint (no 'segattn' metadata)")
    if "state_dict" not in raw or not isinstance(raw["state_dict"], Mapping):
        raise InputFileError(path, "checkpoint has no 'state_dict'")
    meta = raw["segattn"]
    if not isinstance(meta, Mapping):
        raise InputFileError(path, "checkpoint 'segattn' metadata is not a dict")
    try:
        return _parse(path, meta, raw["state_dict"])
    except (KeyError, TypeError, ValueError) as err:
        msg = f"missing key {err}" if isinstance(err, KeyError) else str(err)
        raise InputFileError(path, f"invalid segattn metadata: {msg}") from err


def _parse(path: Path, meta: Mapping[str, Any], state: Mapping[str, Any]) -> CheckpointInfo:
    parsed = _parse_meta(meta)
    weights = {
        k[len(NET_PREFIX) :]: v
        for k, v in state.items()
        if isinstance(k, str) and k.startswith(NET_PREFIX)
    }
    if not weights:
        raise ValueError(f"state_dict holds no network weights (prefix {NET_PREFIX!r})")
    return CheckpointInfo(path=path, state_dict=weights, **parsed)


def _parse_meta(meta: Mapping[str, Any]) -> dict[str, Any]:
    from segattn.nets import available

    version = meta.get("version")
    if version != CHECKPOINT_VERSION:
        raise ValueError(
            f"unsupported version {version!r} (this segattn reads {CHECKPOINT_VERSION})"
        )
    net = meta["net"]
    name = str(net["name"]).lower()
    if name not in available():
        raise ValueError(f"unknown network {name!r}; known: {available()}")
    kwargs = dict(net.get("kwargs") or {})
    if name == "unet":
        kwargs.setdefault("padding", "input")  # U-Nets saved before the option padded the input
    labels = _parse_labels(meta["labels"])
    mode = str(meta.get("mode", "3d")).lower()
    if mode not in ("2d", "3d"):
        raise ValueError(f"mode must be '2d' or '3d', got {mode!r}")
    spatial_dims = 2 if mode == "2d" else 3
    if int(kwargs.get("spatial_dims", spatial_dims)) != spatial_dims:
        raise ValueError(f"mode {mode!r} but net spatial_dims={kwargs.get('spatial_dims')}")
    if int(kwargs.get("num_classes", len(labels))) != len(labels):
        raise ValueError(f"{len(labels)} labels but net num_classes={kwargs.get('num_classes')}")
    if "in_channels" not in kwargs:
        raise ValueError("net kwargs lack 'in_channels'")
    channel_names = {str(k): str(v) for k, v in (meta.get("channel_names") or {}).items()}
    if channel_names and len(channel_names) != int(kwargs["in_channels"]):
        raise ValueError(
            f"{len(channel_names)} channel names but net in_channels={kwargs['in_channels']}"
        )
    slice_axis = meta.get("slice_axis")
    if mode == "2d":
        slice_axis = 1 if slice_axis is None else int(slice_axis)
        if slice_axis not in (0, 1, 2):
            raise ValueError(f"slice_axis must be 0, 1 or 2, got {slice_axis!r}")
    else:
        slice_axis = None
    patch = meta.get("patch_size")
    patch_size = None if patch is None else tuple(int(p) for p in patch)
    if patch_size is not None and (len(patch_size) != spatial_dims or min(patch_size) < 1):
        raise ValueError(f"patch_size must be {spatial_dims} positive ints, got {patch!r}")
    return {
        "version": version,
        "net_name": name,
        "net_kwargs": kwargs,
        "labels": labels,
        "channel_names": channel_names,
        "preprocessing": normalize_preprocessing(meta.get("preprocessing")),
        "mode": mode,
        "slice_axis": slice_axis,
        "patch_size": patch_size,
    }


def _parse_labels(raw: Any) -> dict[str, int]:
    if not isinstance(raw, Mapping) or not raw:
        raise ValueError("labels must be a non-empty dict name -> int")
    labels = {str(k): int(v) for k, v in raw.items()}
    values = sorted(labels.values())
    if values != list(range(len(values))):
        raise ValueError(f"label values must be 0..{len(values) - 1} without gaps, got {values}")
    return dict(sorted(labels.items(), key=lambda kv: kv[1]))


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
