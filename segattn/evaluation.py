"""Per-case, per-structure Dice, HD95 and NSD between a folder of predictions and a folder of
label maps.

Files are matched by case name (the file or DICOM folder name without its ending: ``.nii``,
``.nii.gz``, ``.nrrd``, ``.nhdr``, ``.mha``, ``.mhd``; any format on either side, read by
:mod:`segattn.imageio`). Dice is always computed; ``metrics=("dice", "hd95", "nsd")`` adds the
boundary metrics of :mod:`segattn.metrics`, in millimetres from the voxel spacing of the label
map's header. A structure absent from both the prediction and the label of a case scores NaN
there for every metric (no evidence either way); NaNs are left out of every mean and count. A
structure absent from one side only scores Dice 0, NSD 0 and HD95 = the image diagonal in mm. A
structure that ``dataset.json`` records as not annotated
in a case (``"missing_labels": {"CASE": ["gallbladder"]}``, written by the VISCERAL converter)
also scores NaN there, whatever the prediction: its background in the label is not evidence.

Example::

    result = evaluate_folders("predictions/", "Dataset/labelsTs/")
    table = result.format_table()      # one row per structure, then "mean Dice: 0.xxx"
    result.write_csv("dice.csv")       # columns case,label,dice; "nan" when absent from both
                                       # (+ "annotated" when dataset.json lists missing labels)
    full = evaluate_folders("predictions/", "Dataset/labelsTs/", metrics=("dice", "hd95", "nsd"))
    full.scores["hd95"]["CASE"]["liver"]   # mm; full.write_csv: columns case,label,dice,hd95,nsd
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from segattn.data.layout import MISSING_LABELS_KEY, check_labels
from segattn.errors import InputFileError, SegattnError
from segattn.fileio import atomic_path
from segattn.imageio import (
    GEOMETRY_TOLERANCE,
    align_to_grid,
    check_same_grid,
    image_ending,
    is_dicom_folder,
    label_array,
    read_label_scan,
    same_grid,
    strip_ending,
)
from segattn.metrics import check_metrics, structure_scores

AFFINE_TOLERANCE = GEOMETRY_TOLERANCE


#: how each metric is named in tables
METRIC_TITLES = {"dice": "Dice", "hd95": "HD95 (mm)", "nsd": "NSD"}


@dataclass(frozen=True)
class StructureSummary:
    """One metric of one structure over cases: mean and population std over the ``n`` cases
    where it is defined (NaN when ``n == 0``)."""

    mean: float
    std: float
    n: int


@dataclass
class EvaluationResult:
    """Metrics per case and structure.

    Attributes:
        labels: foreground structure name -> label value, in label order.
        per_case: case -> structure name -> Dice (NaN when absent from prediction and label).
        missing: label cases that had no prediction (only with ``allow_missing``).
        missing_labels: case -> structures not annotated in its label map (NaN there).
        metrics: the requested metric names, in table and CSV column order.
        scores: metric -> case -> structure name -> value; ``scores["dice"] is per_case``.
        nsd_tolerance: the NSD tolerance in mm.
    """

    labels: dict[str, int]
    per_case: dict[str, dict[str, float]]
    missing: list[str] = field(default_factory=list)
    missing_labels: dict[str, list[str]] = field(default_factory=dict)
    metrics: tuple[str, ...] = ("dice",)
    scores: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    nsd_tolerance: float = 1.0

    def __post_init__(self) -> None:
        self.metrics = check_metrics(self.metrics)
        self.scores["dice"] = self.per_case
        absent = [m for m in self.metrics if m not in self.scores]
        if absent:
            raise ValueError(f"no scores for metrics {absent}")

    def not_annotated(self, name: str) -> int:
        """Number of evaluated cases where structure ``name`` is not annotated."""
        return sum(name in self.missing_labels.get(case, ()) for case in self.per_case)

    def summary(self, metric: str = "dice") -> dict[str, StructureSummary]:
        """Structure name -> mean, std (population, ``ddof=0``) and count over defined cases."""
        table = self.scores[metric]
        out = {}
        for name in self.labels:
            values = [d[name] for d in table.values() if not math.isnan(d[name])]
            if values:
                arr = np.asarray(values, dtype=np.float64)
                out[name] = StructureSummary(float(arr.mean()), float(arr.std()), len(values))
            else:
                out[name] = StructureSummary(math.nan, math.nan, 0)
        return out

    def mean(self, metric: str = "dice") -> float:
        """Mean over structures of the per-structure means of ``metric``, NaNs excluded."""
        means = [s.mean for s in self.summary(metric).values() if not math.isnan(s.mean)]
        return float(np.mean(means)) if means else math.nan

    @property
    def mean_dice(self) -> float:
        """Mean over structures of the per-structure mean Dice, NaN structures excluded."""
        return self.mean("dice")

    def format_table(self) -> str:
        """A plain-text table: one row per structure with one ``mean ± std`` column per metric
        (Dice first), then one ``mean <metric>: x`` line per boundary metric and a last line
        ``mean Dice: 0.xxx``."""
        shown = ["dice", *(m for m in self.metrics if m != "dice")]
        summaries = {m: self.summary(m) for m in shown}
        cases = len(self.per_case)
        width = max([len("structure"), *(len(n) for n in self.labels)])
        titles = [f"{METRIC_TITLES[m]} mean ± std" for m in shown]
        widths = [max(len(t), 17) for t in titles]
        header = "  ".join(f"{t:<{w}}" for t, w in zip(titles, widths))
        lines = [f"{'structure':<{width}}  {header}  cases"]
        for name in self.labels:
            s = summaries["dice"][name]
            unannotated = self.not_annotated(name)
            cells = []
            for metric in shown:
                m = summaries[metric][name]
                if m.n:
                    cells.append(f"{m.mean:.3f} ± {m.std:.3f}")
                elif unannotated == cases:
                    cells.append("nan (not annotated)")
                else:
                    cells.append("nan (absent from predictions and labels)")
            note = f" ({unannotated} not annotated)" if unannotated else ""
            row = "  ".join(f"{c:<{w}}" for c, w in zip(cells, widths))
            lines.append(f"{name:<{width}}  {row}  {s.n}/{cases}{note}")
        for metric in shown[1:]:
            tolerance = f" at {self.nsd_tolerance:g} mm" if metric == "nsd" else ""
            lines.append(f"mean {METRIC_TITLES[metric]}{tolerance}: {self.mean(metric):.3f}")
        lines.append(f"mean Dice: {self.mean_dice:.3f}")
        return "\n".join(lines)

    def write_csv(self, path: str | Path) -> None:
        """Write one row per case and structure, columns ``case,label`` then one column per
        requested metric (``dice``, ``hd95`` in mm, ``nsd``; 6 decimals, or ``nan`` when absent
        from prediction and label). When some structure is not annotated in some evaluated
        case, a last column ``annotated`` says ``yes``/``no`` (``no``: every metric is ``nan``
        whatever the prediction). The file is written atomically."""
        path = Path(path)
        flag = any(self.missing_labels.get(case) for case in self.per_case)
        tables = [self.scores[m] for m in self.metrics]
        try:
            with atomic_path(path) as tmp, tmp.open("w", newline="") as fh:
                writer = csv.writer(fh)
                header = ["case", "label", *self.metrics, *(["annotated"] if flag else [])]
                writer.writerow(header)
                for case in self.per_case:
                    unannotated = self.missing_labels.get(case, [])
                    for name in self.labels:
                        row = [case, name, *(_number(t[case][name]) for t in tables)]
                        if flag:
                            row.append("no" if name in unannotated else "yes")
                        writer.writerow(row)
        except OSError as err:
            raise InputFileError(path, f"cannot write: {err.strerror or err}") from err


def _number(value: float) -> str:
    return "nan" if math.isnan(value) else f"{value:.6f}"


def read_label_names(dataset_json: str | Path) -> dict[str, int]:
    """Structure name -> label value from a ``dataset.json`` (nnU-Net v2 or MSD form).

    Raises:
        InputFileError: unreadable JSON, no ``labels``, region-based or malformed labels.
    """
    path = Path(dataset_json)
    return _labels_of(path, _read_json_mapping(path))


def read_missing_labels(dataset_json: str | Path) -> dict[str, list[str]]:
    """Case -> structures not annotated there, from ``dataset.json["missing_labels"]`` (``{}``
    when the key is absent).

    Raises:
        InputFileError: unreadable JSON, or ``missing_labels`` is not a mapping of case names to
            lists of structure names among ``labels``.
    """
    path = Path(dataset_json)
    data = _read_json_mapping(path)
    raw = data.get(MISSING_LABELS_KEY)
    if raw is None:
        return {}
    ok = isinstance(raw, Mapping) and all(
        isinstance(v, list) and all(isinstance(n, str) for n in v) for v in raw.values()
    )
    if not ok:
        raise InputFileError(
            path, f"'{MISSING_LABELS_KEY}' must map case names to lists of structure names"
        )
    missing = {str(case): list(names) for case, names in raw.items()}
    known = set(_labels_of(path, data))
    unknown = sorted({n for names in missing.values() for n in names} - known)
    if unknown:
        raise InputFileError(
            path, f"'{MISSING_LABELS_KEY}' names structures that are not labels: {unknown}"
        )
    return missing


def _read_json_mapping(path: Path) -> Mapping[str, Any]:
    """The JSON object in ``path`` (``{}`` when the file holds another JSON value).

    Raises:
        InputFileError: no such file, or unreadable JSON.
    """
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError as err:
        raise InputFileError(path, "no such file") from err
    except (OSError, ValueError) as err:
        raise InputFileError(path, f"cannot read JSON ({err})") from err
    return data if isinstance(data, Mapping) else {}


def _labels_of(path: Path, data: Mapping[str, Any]) -> dict[str, int]:
    """Structure name -> value from the ``labels`` of ``data`` (read from ``path``)."""
    raw = data.get("labels")
    if not isinstance(raw, Mapping) or not raw:
        raise InputFileError(path, "no 'labels' mapping")
    try:
        return _label_mapping(raw)
    except ValueError as err:
        raise InputFileError(path, str(err)) from err


def _label_mapping(raw: Mapping[str, Any]) -> dict[str, int]:
    # MSD: {"0": "background", "1": "liver"}; nnU-Net v2: {"background": 0, "liver": 1}
    if all(str(k).isdigit() and isinstance(v, str) for k, v in raw.items()):
        pairs = {v: int(k) for k, v in raw.items()}
        if len(pairs) != len(raw):
            raise ValueError("two label values share one name")
        raw = pairs
    try:
        return check_labels(raw)
    except SegattnError as err:
        raise ValueError(str(err)) from err


def evaluate_folders(
    pred_dir: str | Path,
    label_dir: str | Path,
    labels: Mapping[str, int] | None = None,
    *,
    allow_missing: bool = False,
    missing_labels: Mapping[str, Sequence[str]] | None = None,
    metrics: Sequence[str] = ("dice",),
    nsd_tolerance: float = 1.0,
) -> EvaluationResult:
    """Metrics per case and structure between two folders of label maps.

    Args:
        pred_dir: predicted label maps.
        label_dir: reference label maps; every case here needs a prediction.
        labels: structure name -> value (0 = background, not scored). None: read
            ``dataset.json`` beside ``label_dir`` (its parent folder), else name structures by
            their integer values found in the files.
        allow_missing: skip label cases without a prediction (listed in ``result.missing``)
            instead of failing.
        missing_labels: case -> structure names not annotated in that case's label map; they
            score NaN there whatever the prediction. None: taken from the same ``dataset.json``
            as the labels when ``labels`` is None, else none.
        metrics: among ``"dice"``, ``"hd95"``, ``"nsd"`` (Dice is computed in any case).
        nsd_tolerance: NSD tolerance in mm.

    Raises:
        ValueError: unknown metrics or a negative ``nsd_tolerance``.
        InputFileError: a folder is missing or empty, a file is unreadable, grids differ (shape,
            or affine beyond 1e-3), or a file holds values outside the known labels.
        SegattnError: predictions missing for some label cases, or ``missing_labels`` names a
            structure that is not a label.
    """
    names = check_metrics(metrics)
    if not nsd_tolerance >= 0:
        raise ValueError(f"nsd_tolerance must be >= 0 mm, got {nsd_tolerance}")
    preds = _index(Path(pred_dir), allow_empty=True)
    refs = _index(Path(label_dir), allow_empty=False)
    missing = [case for case in refs if case not in preds]
    if missing and not allow_missing:
        shown = ", ".join(missing[:10]) + (" ..." if len(missing) > 10 else "")
        raise SegattnError(f"{pred_dir}: no prediction for {len(missing)} label case(s): {shown}")
    cases = [case for case in refs if case in preds]
    if not cases:
        raise SegattnError(f"{pred_dir}: no prediction matches a case in {label_dir}")
    if labels is None:
        guess = Path(label_dir).resolve().parent / "dataset.json"
        labels = read_label_names(guess) if guess.is_file() else None
        if missing_labels is None and guess.is_file():
            missing_labels = read_missing_labels(guess)
    unannotated = {str(c): [str(n) for n in names] for c, names in (missing_labels or {}).items()}
    known: set[int] | None = None if labels is None else {int(v) for v in labels.values()} | {0}
    by_value: dict[str, dict[str, dict[int, float]]] = {}  # case -> metric -> value -> score
    for case in cases:  # one pair in memory at a time
        p_img, p_arr = _read(preds[case])
        r_img, r_arr = _read(refs[case])
        p_arr = _on_label_grid(case, preds[case], refs[case], p_img, p_arr, r_img)
        if known is not None:
            for path, arr in ((preds[case], p_arr), (refs[case], r_arr)):
                bad = np.setdiff1d(np.unique(arr), sorted(known))
                if bad.size:
                    raise InputFileError(
                        path, f"values {bad[:10].tolist()} are not among the labels {labels}"
                    )
        for path, arr in ((preds[case], p_arr), (refs[case], r_arr)):
            if arr.size and arr.min() < 0:
                raise InputFileError(path, f"negative label value {int(arr.min())}")
        top = max(known) if known is not None else int(max(p_arr.max(), r_arr.max()))
        by_value[case] = _case_scores(p_arr, r_arr, r_img, top + 1, names, nsd_tolerance)
    if labels is None:
        dice_of = (d["dice"] for d in by_value.values())
        values = sorted({v for d in dice_of for v, x in d.items() if not math.isnan(x)})
        labels = {str(v): v for v in values}
    foreground = {k: int(v) for k, v in sorted(labels.items(), key=lambda kv: kv[1]) if v != 0}
    unknown = sorted({n for names in unannotated.values() for n in names} - set(foreground))
    if unknown:
        raise SegattnError(f"missing_labels names structures that are not labels: {unknown}")
    scores = {
        metric: {
            case: {
                name: math.nan if name in unannotated.get(case, ()) else d[metric].get(v, math.nan)
                for name, v in foreground.items()
            }
            for case, d in by_value.items()
        }
        for metric in ("dice", *names)
    }
    return EvaluationResult(
        labels=foreground,
        per_case=scores["dice"],
        missing=missing,
        missing_labels={c: n for c, n in unannotated.items() if c in by_value and n},
        metrics=names,
        scores=scores,
        nsd_tolerance=float(nsd_tolerance),
    )


def _case_scores(
    pred: np.ndarray,
    ref: np.ndarray,
    ref_img: Any,
    num_classes: int,
    metrics: Sequence[str],
    nsd_tolerance: float,
) -> dict[str, dict[int, float]]:
    """Metric -> label value -> score of one case; distances use the label map's spacing."""
    spacing = voxel_spacing(ref_img)[: ref.ndim]
    found = structure_scores(pred, ref, num_classes, spacing, ("dice", *metrics), nsd_tolerance)
    return {m: {v: float(x[v - 1]) for v in range(1, num_classes)} for m, x in found.items()}


def voxel_spacing(img: Any) -> np.ndarray:
    """Voxel size in mm along each array axis of an image: the lengths of its affine's first
    three columns (the header's pixdim for an unsheared NIfTI)."""
    return np.linalg.norm(np.asarray(img.affine, dtype=np.float64)[:3, :3], axis=0)


def _index(folder: Path, allow_empty: bool) -> dict[str, Path]:
    if not folder.is_dir():
        raise InputFileError(folder, "no such folder")
    out: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith("."):
            continue
        is_image = path.is_file() and image_ending(path) is not None
        if not (is_image or (path.is_dir() and is_dicom_folder(path))):
            continue
        case = strip_ending(path)
        if case in out:
            raise InputFileError(path, f"case {case} also stored as {out[case].name}")
        out[case] = path
    if not out and not allow_empty:
        raise InputFileError(folder, "folder contains no label maps (NIfTI, NRRD, MHA or DICOM)")
    return out


def _read(path: Path) -> tuple[Any, np.ndarray]:
    img = read_label_scan(path).image
    return img, label_array(img, path)


def _on_label_grid(
    case: str, pred: Path, ref: Path, p_img: Any, p_arr: np.ndarray, r_img: Any
) -> np.ndarray:
    """The prediction's voxels on the label's grid: as they are, or re-ordered when the two
    files store the same voxels in another axis order (a DICOM series' slice order); any other
    difference is refused with one line."""
    if same_grid(p_img.shape, p_img.affine, r_img.shape, r_img.affine):
        return p_arr
    aligned = align_to_grid(p_arr, p_img.affine, r_img.shape, r_img.affine)
    if aligned is not None:
        return aligned
    check_same_grid(
        pred, p_img.shape, p_img.affine, f"label {ref}", r_img.shape, r_img.affine, f"case {case}: "
    )
    raise AssertionError("unreachable: check_same_grid raises for different grids")
