"""Turn command-line style inputs (files and folders) into cases to predict.

A case is one image file (3D, or 4D with the channels last) or, for a multi-channel model, a
group of nnU-Net channel files ``CASE_0000 .. CASE_000{C-1}`` from the same folder. Problems with
one input become a :class:`CaseError` and never stop the other inputs.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from segattn.errors import InputFileError
from segattn.inference.io import (
    list_nifti,
    nifti_ending,
    output_name,
    split_channel_suffix,
    strip_nifti_ending,
)


@dataclass(frozen=True)
class InputCase:
    """One case: its image files (one per channel, or a single file) and its output file name."""

    name: str
    images: tuple[Path, ...]
    output_name: str

    @property
    def source(self) -> Path:
        """The file that names the case in messages (the channel-0 file)."""
        return self.images[0]


@dataclass(frozen=True)
class CaseError:
    """An input that cannot be predicted; ``error`` is the full one-line message."""

    source: Path
    error: str


def collect_cases(
    inputs: Iterable[str | Path], in_channels: int
) -> tuple[list[InputCase], list[CaseError]]:
    """Expand files and folders into cases, grouping nnU-Net channel files.

    Args:
        inputs: files and folders (folders contribute their ``.nii``/``.nii.gz`` files, sorted).
        in_channels: channels the model takes.

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
            found = list_nifti(path) if path.is_dir() else [path]
        except InputFileError as err:
            errors.append(CaseError(path, str(err)))
            continue
        for f in found:
            key = f.resolve()
            if key not in seen:
                seen.add(key)
                files.append(f)
    cases, group_errors = _group(files, in_channels)
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


def _group(files: Sequence[Path], in_channels: int) -> tuple[list[InputCase], list[CaseError]]:
    groups: dict[tuple[Path, str, str], dict[int, Path]] = defaultdict(dict)
    order: list[Path | tuple[Path, str, str]] = []  # single files and group keys, input order
    for f in files:
        stem = strip_nifti_ending(f)
        case, channel = split_channel_suffix(stem)
        if channel is None:
            order.append(f)
            continue
        key = (f.parent.resolve(), case, nifti_ending(f) or "")
        if key not in groups:
            order.append(key)
        groups[key][channel] = f
    cases: list[InputCase] = []
    errors: list[CaseError] = []
    for item in order:
        if isinstance(item, Path):
            cases.append(_single(item))
            continue
        key = item
        members = groups[key]
        if len(members) == 1:
            # one file with a channel suffix: a normal (possibly 4D) image
            cases.append(_single(next(iter(members.values()))))
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
            ending = key[2] or ".nii.gz"
            images = tuple(members[c] for c in found)
            cases.append(InputCase(name=key[1], images=images, output_name=key[1] + ending))
    return cases, errors


def _single(path: Path) -> InputCase:
    out = output_name(path)
    return InputCase(name=strip_nifti_ending(out), images=(path,), output_name=out)
