"""Turn command-line inputs (files and folders) into cases: shared by ``predict`` and ``explain``.

A case is one scan (an image file, 3D or 4D with channels last, or a DICOM series folder) or,
for a multi-channel model, a group of nnU-Net channel scans ``CASE_0000 .. CASE_000{C-1}`` from
the same folder (files with one ending, or series folders). Problems with one input become a
:class:`CaseError` and never stop the other inputs.

Example::

    cases, errors = discover_inputs(["scans/", "dicom/CT1"], in_channels=1)
    scan = read_scan(cases[0].source, series=cases[0].series)   # segattn.imageio.read_scan
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from segattn.errors import InputFileError
from segattn.imageio.geometry import same_grid
from segattn.imageio.naming import (
    IMAGE_ENDINGS,
    case_name,
    image_ending,
    is_dicom_folder,
    list_images,
    output_name,
    split_channel_suffix,
    strip_ending,
)
from segattn.imageio.read import Scan, channel_count, read_scan


@dataclass(frozen=True)
class InputCase:
    """One case: its scans (one per channel, or a single scan), the series to pick in DICOM
    folders, and its output file name."""

    name: str
    images: tuple[Path, ...]
    output_name: str
    series: str | None = None

    @property
    def source(self) -> Path:
        """The scan that names the case in messages (the channel-0 file or folder)."""
        return self.images[0]


@dataclass(frozen=True)
class CaseError:
    """An input that cannot be processed; ``error`` is the full one-line message."""

    source: Path
    error: str


def list_scans(folder: str | Path) -> list[Path]:
    """The scans in ``folder``: itself if it holds DICOM files, else its image files and its
    sub-folders holding DICOM files, sorted by name (hidden entries skipped).

    Raises:
        InputFileError: nothing to read in the folder.
    """
    folder = Path(folder)
    if is_dicom_folder(folder):
        return [folder]
    series = [p for p in folder.iterdir() if not p.name.startswith(".") and is_dicom_folder(p)]
    found = sorted([*list_images(folder), *series])
    if not found:
        raise InputFileError(
            folder, f"folder contains no image files ({', '.join(IMAGE_ENDINGS)}) or DICOM series"
        )
    return found


def discover_inputs(
    inputs: Iterable[str | Path],
    in_channels: int = 1,
    series: str | None = None,
    output_format: str = "same",
) -> tuple[list[InputCase], list[CaseError]]:
    """Expand files and folders into cases, grouping nnU-Net channel scans.

    Args:
        inputs: image files, DICOM series folders, and folders of those (see :func:`list_scans`).
        in_channels: channels the model takes.
        series: SeriesInstanceUID to pick in DICOM folders holding several series.
        output_format: ``--output-format`` value; names the outputs (see
            :func:`segattn.imageio.naming.output_name`).

    Returns:
        the cases in input order and the inputs that failed (missing path, empty folder,
        incomplete channel group, two inputs with the same output name).
    """
    files: list[Path] = []
    errors: list[CaseError] = []
    seen: set[Path] = set()
    for raw in inputs:
        path = Path(raw)
        try:
            if not path.exists():
                raise InputFileError(path, "no such file or folder")
            found = list_scans(path) if path.is_dir() else [path]
        except InputFileError as err:
            errors.append(CaseError(path, str(err)))
            continue
        for f in found:
            key = f.resolve()
            if key not in seen:
                seen.add(key)
                files.append(f)
    cases, group_errors = _group(files, in_channels, series, output_format)
    errors.extend(group_errors)
    by_output: dict[str, list[InputCase]] = defaultdict(list)
    for case in cases:
        by_output[case.output_name].append(case)
    kept = []
    for case in cases:
        clash = by_output[case.output_name]
        if len(clash) > 1:
            others = ", ".join(str(c.source) for c in clash if c is not case)
            errors.append(
                CaseError(
                    case.source,
                    f"{case.source}: output name {case.output_name} is also the output of "
                    f"{others}; rename one of them",
                )
            )
        else:
            kept.append(case)
    return kept, errors


def read_channels(
    images: str | Path | Scan | Sequence[str | Path | Scan],
    in_channels: int,
    series: str | None = None,
) -> list[Scan]:
    """Open a case's scans (paths, or scans already opened) and check them against a model's
    channels: one scan with ``in_channels`` channels (3D for 1, 4D channels-last otherwise), or
    ``in_channels`` 3D scans on one voxel grid.

    Raises:
        InputFileError: unreadable scan, wrong channel count, grids that differ (one line).
        ValueError: no scan given.
    """
    items = [images] if isinstance(images, str | Path | Scan) else list(images)
    if not items:
        raise ValueError("no image files given")
    scans = [s if isinstance(s, Scan) else read_scan(s, series) for s in items]
    first, c = scans[0], in_channels
    if len(scans) == 1:
        n = channel_count(first.image)
        if n != c:
            hint = "" if c == 1 else f" (a 4D file or channel files _0000.._{c - 1:04d})"
            raise InputFileError(
                first.path,
                f"image has {n} channel(s), shape {first.shape}; the model takes {c}{hint}",
            )
        return scans
    if len(scans) != c:
        raise InputFileError(first.path, f"{len(scans)} channel files; the model takes {c}")
    for scan in scans:
        if channel_count(scan.image) != 1:
            raise InputFileError(scan.path, f"a channel file must be 3D, got shape {scan.shape}")
        if not same_grid(scan.shape, scan.affine, first.shape, first.affine):
            raise InputFileError(scan.path, f"voxel grid differs from {first.path}")
    return scans


def _group(
    files: Sequence[Path], in_channels: int, series: str | None, output_format: str
) -> tuple[list[InputCase], list[CaseError]]:
    groups: dict[tuple[Path, str, str], dict[int, Path]] = defaultdict(dict)
    order: list[Path | tuple[Path, str, str]] = []  # single scans and group keys, input order
    for f in files:
        case, channel = split_channel_suffix(strip_ending(f))
        if channel is None:
            order.append(f)
            continue
        key = (f.parent.resolve(), case, image_ending(f) or "")
        if key not in groups:
            order.append(key)
        groups[key][channel] = f
    cases: list[InputCase] = []
    errors: list[CaseError] = []
    for item in order:
        if isinstance(item, Path):
            cases.append(_single(item, series, output_format))
            continue
        members = groups[item]
        if len(members) == 1:
            # one scan with a channel suffix: a normal (possibly 4D) image
            cases.append(_single(next(iter(members.values())), series, output_format))
            continue
        found = sorted(members)
        first = members[found[0]]
        names = ", ".join(f"_{c:04d}" for c in found)
        if in_channels == 1:
            errors.append(
                CaseError(
                    first,
                    f"{first}: looks like nnU-Net channel files ({names}) but the model takes "
                    "1 channel; pass the _0000 file alone",
                )
            )
        elif found != list(range(in_channels)):
            errors.append(
                CaseError(
                    first,
                    f"{first}: the model takes {in_channels} channels "
                    f"(_0000.._{in_channels - 1:04d}) but found channel files {names}",
                )
            )
        else:
            images = tuple(members[c] for c in found)
            out = output_name(first, output_format)
            cases.append(InputCase(item[1], images, out, series))
    return cases, errors


def _single(path: Path, series: str | None, output_format: str) -> InputCase:
    return InputCase(case_name(path), (path,), output_name(path, output_format), series)
