"""The ablation grid: read ``GRID.yaml``, expand its axes into cells, compose each cell's
training config and its digest.

A grid file::

    base: configs/unet2d_scse.yaml        # a `segattn train` config (beside GRID.yaml or cwd)
    data_root: /data/Dataset001           # nnU-Net-layout dataset (same rule)
    test: {images: imagesTs, labels: labelsTs}   # or {fold: 0, splits_file: splits_final.json}
    metrics: [dice, hd95, nsd]
    nsd_tolerance: 1.0                    # mm (optional)
    axes:                                 # dotted `segattn train` keys; the grid is their product
      model.attention: [null, cse, sse, scse]
      seed_everything: [0, 1]
    baseline: {model.attention: null}
    overrides: {trainer.max_epochs: 20}
    out: runs/ablation                    # default for --out (relative to the cwd)

Axes are generic: any dotted key of the training config works (``model.net`` as soon as the
config accepts it). Axes named ``seed_everything`` or ending in ``.seed`` are *seed axes*: their
cells are repetitions of one configuration and are pooled in the summary and the statistics.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import itertools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from segattn.errors import InputFileError, SegattnError
from segattn.metrics import check_metrics

GRID_KEYS = (
    "base",
    "data_root",
    "test",
    "metrics",
    "nsd_tolerance",
    "axes",
    "baseline",
    "overrides",
    "out",
)
_UNSAFE = re.compile(r"[^A-Za-z0-9._=+-]+")


@dataclass(frozen=True)
class Cell:
    """One training run of the grid.

    Attributes:
        name: folder name, ``key=value`` per axis joined by ``__``.
        params: axis key -> value (YAML value) in axis order.
        config: the composed ``segattn train`` config (base + overrides + params + data), before
            the per-cell output folders are added.
        digest: SHA-256 of the config, the test set and the metrics; a folder holding another
            digest belongs to another experiment.
    """

    name: str
    params: dict[str, Any]
    config: dict[str, Any]
    digest: str


@dataclass
class GridSpec:
    """A parsed grid file (paths resolved, values checked)."""

    path: Path
    base: Path
    base_config: dict[str, Any]
    data_root: Path
    test: dict[str, Any]
    metrics: tuple[str, ...]
    nsd_tolerance: float
    axes: dict[str, list[Any]]
    baseline: dict[str, Any]
    overrides: dict[str, Any]
    out: Path | None

    @property
    def seed_axes(self) -> list[str]:
        """Axes whose cells repeat one configuration (pooled in summaries and statistics)."""
        return [key for key in self.axes if is_seed_axis(key)]

    def cells(self) -> list[Cell]:
        """The product of the axes, first axis slowest, as :class:`Cell` objects."""
        keys = list(self.axes)
        short = _short_names(keys)
        cells: list[Cell] = []
        seen: dict[str, dict[str, Any]] = {}
        for values in itertools.product(*(self.axes[k] for k in keys)):
            params = dict(zip(keys, values, strict=True))
            parts = [f"{short[k]}={format_value(v)}" for k, v in params.items()]
            name = _UNSAFE.sub("_", "__".join(parts)) or "cell"
            if name in seen:
                raise SegattnError(
                    f"{self.path}: cells {seen[name]} and {params} get the same folder name {name}"
                )
            seen[name] = params
            config = self.compose(params)
            cells.append(Cell(name, params, config, self._digest(config)))
        return cells

    def compose(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """The base config with the overrides, ``params``, the data root and the fold set."""
        config = copy.deepcopy(self.base_config)
        for key, value in {**self.overrides, **params}.items():
            set_dotted(config, key, copy.deepcopy(value))
        set_dotted(config, "data.root", str(self.data_root))
        if "fold" in self.test:
            set_dotted(config, "data.splits_file", self.test["splits_file"])
            set_dotted(config, "data.fold", self.test["fold"])
        return config

    def _digest(self, config: Mapping[str, Any]) -> str:
        record = {
            "config": config,
            "test": self.test,
            "metrics": list(self.metrics),
            "nsd_tolerance": self.nsd_tolerance,
        }
        text = json.dumps(record, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()


def is_seed_axis(key: str) -> bool:
    """Whether ``key`` names a seed (``seed_everything`` or ``<section>.seed``)."""
    return key == "seed_everything" or key.rsplit(".", 1)[-1] == "seed"


def format_value(value: Any) -> str:
    """How an axis value is written in folder names and CSV columns: ``none`` for null,
    ``true``/``false``, numbers and strings as written, lists and mappings as compact JSON."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def set_dotted(config: dict[str, Any], key: str, value: Any) -> None:
    """``config[a][b][c] = value`` for ``key = "a.b.c"``, creating missing sections.

    Raises:
        SegattnError: a section on the way is not a mapping.
    """
    node = config
    parts = key.split(".")
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise SegattnError(f"cannot set {key}: {'.'.join(parts[: i + 1])} is not a section")
        node = child
    node[parts[-1]] = value


def load_grid(path: str | Path) -> GridSpec:
    """Read and check a grid file.

    Raises:
        InputFileError: unreadable YAML, unknown keys (the closest valid key is suggested),
            missing ``base``/``data_root``/``axes``, bad axis lists, a baseline value not on
            its axis, a missing base config, data folder or test folder.
    """
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise InputFileError(path, "no such file") from err
    except (OSError, yaml.YAMLError) as err:
        raise InputFileError(path, f"cannot read YAML ({err})") from err
    if not isinstance(raw, dict):
        raise InputFileError(path, "must be a mapping with keys " + ", ".join(GRID_KEYS))
    for key in raw:
        if key not in GRID_KEYS:
            close = difflib.get_close_matches(str(key), GRID_KEYS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise InputFileError(
                path, f"unknown key {key!r}{hint}; valid keys: {', '.join(GRID_KEYS)}"
            )
    for key in ("base", "data_root", "axes"):
        if raw.get(key) in (None, "", {}):
            raise InputFileError(path, f"'{key}' is required")
    base = _existing(path, raw["base"], "base config", folder=False)
    base_config = yaml.safe_load(base.read_text(encoding="utf-8")) or {}
    if not isinstance(base_config, dict):
        raise InputFileError(base, "a training config must be a mapping")
    data_root = _existing(path, raw["data_root"], "data_root", folder=True)
    axes = raw["axes"]
    if not isinstance(axes, dict) or not all(
        isinstance(v, list) and v and isinstance(k, str) for k, v in axes.items()
    ):
        raise InputFileError(path, "'axes' must map dotted keys to non-empty lists of values")
    for key, values in axes.items():
        texts = [format_value(v) for v in values]
        if len(set(texts)) != len(texts):
            raise InputFileError(path, f"axis {key} repeats a value: {values}")
    overrides = _mapping(path, raw, "overrides")
    both = sorted(set(overrides) & set(axes))
    if both:
        raise InputFileError(path, f"keys both in 'axes' and 'overrides': {both}")
    baseline = _mapping(path, raw, "baseline")
    for key, value in baseline.items():
        if key not in axes:
            raise InputFileError(path, f"baseline key {key!r} is not an axis ({list(axes)})")
        if is_seed_axis(key):
            raise InputFileError(path, f"baseline key {key!r} is a seed axis")
        if format_value(value) not in [format_value(v) for v in axes[key]]:
            raise InputFileError(path, f"baseline {key}: {value!r} is not among {axes[key]}")
    try:
        metrics = check_metrics(["dice", *(raw.get("metrics") or [])])
        tolerance = float(raw.get("nsd_tolerance", 1.0))
    except (TypeError, ValueError) as err:
        raise InputFileError(path, str(err)) from err
    if not tolerance >= 0:
        raise InputFileError(path, f"nsd_tolerance must be >= 0 mm, got {tolerance}")
    out = raw.get("out")
    return GridSpec(
        path=path,
        base=base,
        base_config=base_config,
        data_root=data_root,
        test=_test_set(path, raw.get("test"), data_root),
        metrics=metrics,
        nsd_tolerance=tolerance,
        axes={k: list(v) for k, v in axes.items()},
        baseline=baseline,
        overrides=overrides,
        out=None if out in (None, "") else Path(str(out)),
    )


def _test_set(path: Path, raw: Any, data_root: Path) -> dict[str, Any]:
    """``{"images": DIR, "labels": DIR}`` or ``{"fold": K, "splits_file": FILE}``, absolute."""
    raw = {"images": "imagesTs", "labels": "labelsTs"} if raw is None else raw
    if not isinstance(raw, dict) or set(raw) not in ({"images", "labels"}, {"fold", "splits_file"}):
        raise InputFileError(
            path, "'test' must be {images: DIR, labels: DIR} or {fold: K, splits_file: FILE}"
        )
    if "fold" in raw:
        splits = data_root / str(raw["splits_file"])
        if not splits.is_file():
            raise InputFileError(splits, "splits file not found")
        if not isinstance(raw["fold"], int) or raw["fold"] < 0:
            raise InputFileError(path, f"test fold must be an integer >= 0, got {raw['fold']!r}")
        return {"fold": raw["fold"], "splits_file": str(splits.resolve())}
    out = {}
    for key in ("images", "labels"):
        folder = data_root / str(raw[key])
        if not folder.is_dir():
            raise InputFileError(folder, f"test {key} folder not found")
        out[key] = str(folder.resolve())
    return out


def _existing(grid: Path, value: Any, what: str, folder: bool) -> Path:
    """``value`` relative to the grid file's folder if it exists there, else to the cwd."""
    candidates = [Path(str(value))]
    if not candidates[0].is_absolute():
        candidates.insert(0, grid.parent / candidates[0])
    for candidate in candidates:
        if candidate.is_dir() if folder else candidate.is_file():
            return candidate.resolve()
    raise InputFileError(grid, f"{what} {value} not found (relative to {grid.parent} or the cwd)")


def _mapping(path: Path, raw: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = raw.get(key) or {}
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise InputFileError(path, f"'{key}' must map dotted keys to values")
    return dict(value)


def _short_names(keys: list[str]) -> dict[str, str]:
    """The last dotted component of each key, or the whole key where two would clash."""
    last = [k.rsplit(".", 1)[-1] for k in keys]
    return {k: (s if last.count(s) == 1 else k) for k, s in zip(keys, last, strict=True)}
