"""Dataset layouts on disk: nnU-Net v2 raw datasets and the older Medical Segmentation Decathlon.

The working layout is nnU-Net v2's "raw" dataset
(https://github.com/MIC-DKFZ/nnUNet/blob/master/documentation/dataset_format.md)::

    DATASET/
        dataset.json            channel_names, labels (name -> int), numTraining, file_ending
        imagesTr/CASE_0000.nii.gz   one file per channel: _0000, _0001, ...
        labelsTr/CASE.nii.gz
        imagesTs/ labelsTs/     optional

The Decathlon (MSD) form lists its cases in ``dataset.json`` instead (``training``: ``[{"image":
"./imagesTr/x.nii.gz", "label": "./labelsTr/x.nii.gz"}]``, ``test``: ``["./imagesTs/y.nii.gz"]``),
maps integer strings to label names and names its channels under ``modality``; its images may be
single 4D multi-channel files. nnU-Net v1 datasets use that ``dataset.json`` with per-channel files
(``x_0000.nii.gz``); both are read.

Only file names are looked at here; nothing opens an image.
"""

from __future__ import annotations

import json
import logging
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from segattn.errors import InputFileError, SegattnError
from segattn.fileio import write_text_atomic
from segattn.imageio.naming import split_channel_suffix

if TYPE_CHECKING:
    pass

logger = logging.getLogger(__name__)

DATASET_JSON = "dataset.json"
#: ``dataset.json`` key mapping a case to the structures not annotated in its label map (their
#: background there is not evidence): ``{"missing_labels": {"CASE": ["gallbladder"]}}``.
MISSING_LABELS_KEY = "missing_labels"
_CT_NAME = re.compile(r"(?<![A-Z])CT")


@dataclass
class Case:
    """One case: its image files (one per channel, or one 4D file) and its label map, if any."""

    name: str
    images: list[Path]
    label: Path | None = None


@dataclass
class DatasetInfo:
    """What ``dataset.json`` and the case folders say about a dataset.

    ``labels`` maps structure names to consecutive integers ``0..K-1`` with background 0, sorted
    by value; it is checked on construction.

    Example:
        >>> info = DatasetInfo("ds", {"0": "T1"}, {"background": 0, "left_thalamus": 1})
        >>> info.num_classes, info.in_channels, info.label_names
        (2, 1, ['background', 'left_thalamus'])
    """

    root: Path
    channel_names: dict[str, str]
    labels: dict[str, int]
    file_ending: str = ".nii.gz"
    training: list[Case] = field(default_factory=list)
    test: list[Case] = field(default_factory=list)
    name: str | None = None
    layout: str = "nnunet"

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        self.labels = check_labels(self.labels)
        self.channel_names = {str(k): str(v) for k, v in self.channel_names.items()}
        if not self.channel_names:
            raise SegattnError("a dataset needs at least one channel in channel_names")

    @property
    def num_classes(self) -> int:
        """Number of classes including background."""
        return len(self.labels)

    @property
    def in_channels(self) -> int:
        """Number of image channels."""
        return len(self.channel_names)

    @property
    def label_names(self) -> list[str]:
        """Structure names ordered by label value; index 0 is background."""
        return list(self.labels)

    @property
    def is_ct(self) -> bool:
        """Whether channel 0 is CT (its name contains the word "CT", e.g. "CT", "CTce_ThAb").

        nnU-Net keys its intensity normalisation on the same name; callers pick HU windowing
        defaults from it.
        """
        first = self.channel_names[min(self.channel_names, key=int)]
        return bool(_CT_NAME.search(first.upper()))


def check_labels(labels: Mapping[str, Any]) -> dict[str, int]:
    """Validate a name -> integer label mapping and return it sorted by value.

    Raises:
        SegattnError: region-based labels (lists), an ``ignore`` label, non-integers, duplicate
            values, or values that are not ``0..K-1`` with ``K >= 2``.
    """
    checked: dict[str, int] = {}
    for name, value in labels.items():
        if isinstance(value, (list, tuple)):
            raise SegattnError(
                f"region-based label {name!r}: {list(value)} is not supported; "
                "give each structure one integer"
            )
        if str(name).lower() == "ignore":
            raise SegattnError(f"the 'ignore' label ({value}) is not supported")
        if isinstance(value, bool) or not isinstance(value, int):
            raise SegattnError(f"label {name!r} must map to an integer, got {value!r}")
        checked[str(name)] = value
    values = sorted(checked.values())
    if len(set(values)) != len(values):
        dupes = sorted({v for v in values if values.count(v) > 1})
        raise SegattnError(f"label values are used twice: {dupes}")
    if values != list(range(len(values))) or len(values) < 2:
        raise SegattnError(
            f"label values must be 0..K-1 with background 0 and K >= 2, got {values}"
        )
    return dict(sorted(checked.items(), key=lambda item: item[1]))


NIFTI_ENDINGS = (".nii.gz", ".nii")


def nifti_ending(path: str | Path) -> str | None:
    """``".nii.gz"`` or ``".nii"`` (case-insensitive match, returned lower case), else None."""
    name = Path(path).name.lower()
    for ending in NIFTI_ENDINGS:
        if name.endswith(ending) and len(name) > len(ending):
            return ending
    return None


def strip_nifti_ending(path: str | Path) -> str:
    """File name without ``.nii``/``.nii.gz``: ``"dir/CASE_0000.nii.gz"`` -> ``"CASE_0000"``."""
    name = Path(path).name
    ending = nifti_ending(name)
    return name[: -len(ending)] if ending else name


def case_name_from_image(path: str | Path, file_ending: str = ".nii.gz") -> str:
    """Case name of an image file: the file ending and nnU-Net's ``_0000`` channel suffix removed.

    ``brain_0000.nii.gz`` -> ``brain``; ``1000_3.nii.gz`` -> ``1000_3`` (not a 4-digit suffix).
    """
    name = Path(path).name
    if file_ending and name.endswith(file_ending):
        name = name[: -len(file_ending)]
    else:
        name = strip_nifti_ending(name)
    return split_channel_suffix(name)[0]


def channel_file(folder: str | Path, case: str, channel: int, file_ending: str = ".nii.gz") -> Path:
    """nnU-Net image file name of one channel of one case: ``folder/CASE_0001.nii.gz``."""
    return Path(folder) / f"{case}_{channel:04d}{file_ending}"


def load_dataset(root: str | Path) -> DatasetInfo:
    """Read ``dataset.json`` and find every case of an nnU-Net v2 or MSD dataset.

    Raises:
        InputFileError: the folder or ``dataset.json`` is missing or invalid, a channel file or a
            training label is missing, or there are no training cases. The message names the file.
    """
    root = Path(root)
    if not root.is_dir():
        raise InputFileError(
            root, "dataset folder not found" if not root.exists() else "not a folder"
        )
    json_path = root / DATASET_JSON
    if not json_path.is_file():
        raise InputFileError(json_path, "missing (an nnU-Net v2 or MSD dataset needs dataset.json)")
    meta = _read_json(json_path)
    if not isinstance(meta, dict):
        raise InputFileError(json_path, "must hold a JSON object")
    labels = _labels_from_json(json_path, meta)
    channels = meta.get("channel_names", meta.get("modality"))
    if not isinstance(channels, dict) or not channels:
        raise InputFileError(
            json_path, "needs 'channel_names' (or MSD 'modality'), e.g. {\"0\": \"T1\"}"
        )
    channel_names = {str(k): str(v) for k, v in sorted(channels.items(), key=lambda kv: int(kv[0]))}
    if sorted(int(k) for k in channel_names) != list(range(len(channel_names))):
        raise InputFileError(json_path, f"channel numbers must be 0..C-1, got {list(channels)}")

    if isinstance(meta.get("training"), list):
        file_ending = str(meta.get("file_ending") or _ending_of(meta["training"]))
        training = _msd_cases(
            root, json_path, meta["training"], len(channel_names), file_ending, True
        )
        test = _msd_cases(
            root, json_path, meta.get("test") or [], len(channel_names), file_ending, False
        )
        layout = "msd"
    else:
        file_ending = str(meta.get("file_ending", ".nii.gz"))
        training = _scan_cases(root, "Tr", channel_names, file_ending, required=True)
        test = _scan_cases(root, "Ts", channel_names, file_ending, required=False)
        layout = "nnunet"
    if not training:
        raise InputFileError(root / "imagesTr", f"no training cases (*_0000{file_ending}) found")
    expected = meta.get("numTraining")
    if isinstance(expected, int) and expected != len(training):
        raise InputFileError(
            json_path, f"says numTraining={expected} but {len(training)} training cases were found"
        )
    try:
        return DatasetInfo(
            root=root,
            channel_names=channel_names,
            labels=labels,
            file_ending=file_ending,
            training=training,
            test=test,
            name=meta.get("name"),
            layout=layout,
        )
    except SegattnError as err:
        raise InputFileError(json_path, str(err)) from None


def write_dataset_json(
    root: str | Path,
    channel_names: Mapping[str | int, str],
    labels: Mapping[str, int],
    num_training: int,
    file_ending: str = ".nii.gz",
    **extra: Any,
) -> Path:
    """Write an nnU-Net v2 ``dataset.json`` atomically (temporary file + rename); return its path.

    ``extra`` keys (``name``, ``description``, ...) are written after the required ones.
    """
    data: dict[str, Any] = {
        "channel_names": {str(k): str(v) for k, v in channel_names.items()},
        "labels": check_labels(labels),
        "numTraining": int(num_training),
        "file_ending": file_ending,
        **extra,
    }
    path = Path(root) / DATASET_JSON
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps(data, indent=2) + "\n")
    return path


def split_cases(
    cases: Sequence[Case],
    val_fraction: float = 0.2,
    seed: int = 0,
    splits_file: str | Path | None = None,
    fold: int = 0,
) -> tuple[list[Case], list[Case]]:
    """Split cases into training and validation cases, each list sorted by name.

    Without ``splits_file``: cases sorted by name, shuffled with ``seed``; ``round(n *
    val_fraction)`` of them (at least 1 when there are >= 2 cases and ``val_fraction > 0``, at most
    n - 1) validate. With ``splits_file`` (nnU-Net's ``splits_final.json``: a list of ``{"train":
    [...], "val": [...]}``), fold ``fold`` decides; dataset cases it does not mention are left out.

    Raises:
        ValueError: ``val_fraction`` outside [0, 1).
        InputFileError: unreadable splits file, missing fold, or case names not in ``cases``.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    by_name = {case.name: case for case in cases}
    if len(by_name) != len(cases):
        raise SegattnError("case names must be unique")
    if splits_file is not None:
        train_names, val_names = _read_fold(Path(splits_file), fold, by_name)
    else:
        names = sorted(by_name)
        random.Random(seed).shuffle(names)
        n_val = round(len(names) * val_fraction)
        if val_fraction > 0 and len(names) >= 2:
            n_val = min(max(n_val, 1), len(names) - 1)
        val_names, train_names = names[:n_val], names[n_val:]
    return [by_name[n] for n in sorted(train_names)], [by_name[n] for n in sorted(val_names)]


def _read_fold(path: Path, fold: int, by_name: Mapping[str, Case]) -> tuple[list[str], list[str]]:
    if not path.is_file():
        raise InputFileError(path, "splits file not found")
    splits = _read_json(path)
    valid = isinstance(splits, list) and all(
        isinstance(s, dict) and isinstance(s.get("train"), list) and isinstance(s.get("val"), list)
        for s in splits
    )
    if not valid:
        raise InputFileError(path, 'must be a list of {"train": [...], "val": [...]} folds')
    if not 0 <= fold < len(splits):
        raise InputFileError(path, f"has folds 0..{len(splits) - 1}, not fold {fold}")
    train, val = [str(n) for n in splits[fold]["train"]], [str(n) for n in splits[fold]["val"]]
    unknown = sorted(set(train + val) - set(by_name))
    if unknown:
        shown = ", ".join(unknown[:5]) + (
            f" (+{len(unknown) - 5} more)" if len(unknown) > 5 else ""
        )
        raise InputFileError(path, f"fold {fold} names cases that are not in the dataset: {shown}")
    both = sorted(set(train) & set(val))
    if both:
        raise InputFileError(
            path, f"fold {fold} has cases in both train and val: {', '.join(both)}"
        )
    return train, val


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise InputFileError(path, f"invalid JSON: {err.msg} (line {err.lineno})") from None
    except (OSError, UnicodeDecodeError) as err:
        raise InputFileError(path, f"cannot read: {err}") from None


def _labels_from_json(json_path: Path, meta: dict[str, Any]) -> dict[str, int]:
    raw = meta.get("labels")
    if not isinstance(raw, dict) or not raw:
        raise InputFileError(json_path, 'needs \'labels\', e.g. {"background": 0, "liver": 1}')
    # MSD: {"0": "background", "1": "tumour"}; nnU-Net v2: {"background": 0, "tumour": 1}.
    msd = all(str(k).isdigit() and isinstance(v, str) for k, v in raw.items())
    pairs = {v: int(k) for k, v in raw.items()} if msd else raw
    if msd and len(pairs) != len(raw):
        raise InputFileError(json_path, "two label values share one name")
    try:
        return check_labels(pairs)
    except SegattnError as err:
        raise InputFileError(json_path, str(err)) from None


def _ending_of(entries: list[Any]) -> str:
    first = entries[0] if entries else None
    image = first.get("image") if isinstance(first, dict) else first
    if isinstance(image, str) and image.endswith(".nii.gz"):
        return ".nii.gz"
    return Path(image).suffix if isinstance(image, str) and Path(image).suffix else ".nii.gz"


def _scan_cases(
    root: Path, subset: str, channel_names: Mapping[str, str], file_ending: str, required: bool
) -> list[Case]:
    images_dir, labels_dir = root / f"images{subset}", root / f"labels{subset}"
    if not images_dir.is_dir():
        if required:
            raise InputFileError(images_dir, "missing folder of training images")
        return []
    found: dict[str, set[int]] = {}
    for path in sorted(images_dir.iterdir()):
        if path.name.startswith(".") or not path.name.endswith(file_ending):
            continue
        case, channel = split_channel_suffix(path.name[: -len(file_ending)])
        if channel is None:
            raise InputFileError(
                path, f"image name lacks the channel suffix (nnU-Net: CASE_0000{file_ending})"
            )
        if channel >= len(channel_names):
            raise InputFileError(
                path,
                f"channel {channel}, but dataset.json declares {len(channel_names)} channel(s)",
            )
        found.setdefault(case, set()).add(channel)
    if labels_dir.is_dir() and required:
        for path in labels_dir.iterdir():
            if not path.name.startswith(".") and path.name.endswith(file_ending):
                found.setdefault(path.name[: -len(file_ending)], set())
    cases = []
    for name in sorted(found):
        images = [channel_file(images_dir, name, c, file_ending) for c in range(len(channel_names))]
        for channel, image in enumerate(images):
            if channel not in found[name]:
                what = channel_names[str(channel)]
                raise InputFileError(image, f"missing channel {channel} ({what}) of case {name}")
        label = labels_dir / f"{name}{file_ending}"
        if required and not label.is_file():
            raise InputFileError(label, f"missing label of training case {name}")
        cases.append(Case(name, images, label if label.is_file() else None))
    return cases


def _msd_cases(
    root: Path,
    json_path: Path,
    entries: list[Any],
    n_channels: int,
    file_ending: str,
    training: bool,
) -> list[Case]:
    cases = []
    for entry in entries:
        image_ref = entry.get("image") if isinstance(entry, dict) else entry
        label_ref = entry.get("label") if isinstance(entry, dict) else None
        if not isinstance(image_ref, str) or (training and not isinstance(label_ref, str)):
            kind = '{"image": ..., "label": ...} objects' if training else "image paths"
            raise InputFileError(
                json_path, f"'{'training' if training else 'test'}' must list {kind}"
            )
        image = root / image_ref
        name = case_name_from_image(image, file_ending)
        if image.is_file():
            images = [image]  # MSD: one (possibly 4D multi-channel) file
        else:  # nnU-Net v1: dataset.json names x.nii.gz, the files are x_0000.nii.gz, ...
            images = [channel_file(image.parent, name, c, file_ending) for c in range(n_channels)]
            if not all(p.is_file() for p in images):
                raise InputFileError(image, f"missing image of case {name} listed in dataset.json")
        label = root / label_ref if isinstance(label_ref, str) else None
        if label is not None and not label.is_file():
            raise InputFileError(label, f"missing label of case {name} listed in dataset.json")
        cases.append(Case(name, images, label))
    names = [c.name for c in cases]
    if len(set(names)) != len(names):
        raise InputFileError(json_path, "lists a case twice")
    return sorted(cases, key=lambda c: c.name)
