"""Label names for viewers: an ITK-SNAP label description file and a 3D Slicer colour table.

Both list every label value with its structure name and an RGB colour. Colours depend only on the
label value (a fixed palette, then golden-ratio hues), so the same model gives the same colours in
every run and every output folder. Written once per output folder, beside the label maps:

- ``labels.itksnap.txt``: ITK-SNAP *Segmentation > Import Label Descriptions*; one line per label
  ``IDX R G B A VIS MSH "name"`` after ``#`` comment lines.
- ``labels.ctbl``: 3D Slicer colour table (*Add Data*, then choose it as the label map's colour
  node); one line per label ``IDX name R G B A``, names without spaces.
"""

from __future__ import annotations

import colorsys
import re
from collections.abc import Mapping
from pathlib import Path

from segattn.errors import InputFileError
from segattn.fileio import write_text_atomic

ITKSNAP_FILE = "labels.itksnap.txt"
SLICER_FILE = "labels.ctbl"

# distinct, readable colours for the first labels (value 1 is the first entry)
_PALETTE = (
    (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
    (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212),
    (0, 128, 128), (220, 190, 255), (170, 110, 40), (255, 250, 200), (128, 0, 0),
    (170, 255, 195), (128, 128, 0), (255, 215, 180), (0, 0, 128), (128, 128, 128),
)  # fmt: skip
_GOLDEN = 0.618033988749895


def label_colour(value: int) -> tuple[int, int, int]:
    """RGB (0..255) of a label value; 0 (background) is black."""
    if value == 0:
        return (0, 0, 0)
    if value <= len(_PALETTE):
        return _PALETTE[value - 1]
    hue = (value * _GOLDEN) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.65 + 0.35 * ((value // 7) % 2), 0.95)
    return (round(r * 255), round(g * 255), round(b * 255))


def _entries(labels: Mapping[str, int]) -> list[tuple[int, str]]:
    entries = sorted((int(v), str(n)) for n, v in labels.items())
    if not entries or entries[0][0] != 0:
        entries.insert(0, (0, "background"))
    return entries


def itksnap_text(labels: Mapping[str, int]) -> str:
    """ITK-SNAP label description text for ``labels`` (structure name -> value)."""
    lines = [
        "# ITK-SnAP Label Description File (written by segattn)",
        "# IDX   -R-  -G-  -B-  -A--  VIS MSH  LABEL",
    ]
    for value, name in _entries(labels):
        r, g, b = label_colour(value)
        alpha, visible = (0, 0) if value == 0 else (1, 1)
        label = "Clear Label" if value == 0 else name.replace('"', "'")
        lines.append(
            f'{value:5d} {r:5d} {g:4d} {b:4d} {alpha:8d} {visible:3d} {visible:3d}    "{label}"'
        )
    return "\n".join(lines) + "\n"


def slicer_text(labels: Mapping[str, int]) -> str:
    """3D Slicer colour table text for ``labels`` (structure name -> value)."""
    entries = _entries(labels)
    lines = ["# Color table file written by segattn", f"# {len(entries)} values"]
    for value, name in entries:
        r, g, b = label_colour(value)
        alpha = 0 if value == 0 else 255
        word = re.sub(r"\s+", "_", name.strip()) or str(value)
        lines.append(f"{value} {word} {r} {g} {b} {alpha}")
    return "\n".join(lines) + "\n"


def write_label_files(folder: str | Path, labels: Mapping[str, int]) -> list[Path]:
    """Write :data:`ITKSNAP_FILE` and :data:`SLICER_FILE` into ``folder`` (atomically; a file
    that already holds the same text is left alone). Returns the two paths."""
    folder = Path(folder)
    out = []
    for name, text in ((ITKSNAP_FILE, itksnap_text(labels)), (SLICER_FILE, slicer_text(labels))):
        path = folder / name
        try:
            if not (path.is_file() and path.read_text(encoding="utf-8") == text):
                write_text_atomic(path, text)
        except OSError as err:
            raise InputFileError(path, f"cannot write: {err.strerror or err}") from err
        out.append(path)
    return out


_ITKSNAP_LINE = re.compile(
    r'^\s*(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+([\d.]+)\s+([01])\s+([01])\s+"(.*)"\s*$'
)


def read_itksnap_labels(path: str | Path) -> dict[int, tuple[str, tuple[int, int, int]]]:
    """Parse an ITK-SNAP label description file: value -> (name, RGB).

    Raises:
        InputFileError: a line that is neither a comment nor a label entry.
    """
    out = {}
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = _ITKSNAP_LINE.match(line)
        if match is None:
            raise InputFileError(path, f"line {number} is not an ITK-SNAP label entry: {line!r}")
        rgb = (int(match[2]), int(match[3]), int(match[4]))
        out[int(match[1])] = (match[8], rgb)
    return out


def read_slicer_colours(path: str | Path) -> dict[int, tuple[str, tuple[int, int, int, int]]]:
    """Parse a 3D Slicer colour table: value -> (name, RGBA).

    Raises:
        InputFileError: a line that is neither a comment nor ``IDX name R G B A``.
    """
    out = {}
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = line.split()
        if len(parts) != 6 or not all(p.isdigit() for p in (parts[0], *parts[2:])):
            raise InputFileError(path, f"line {number} is not a Slicer colour entry: {line!r}")
        rgba = (int(parts[2]), int(parts[3]), int(parts[4]), int(parts[5]))
        out[int(parts[0])] = (parts[1], rgba)
    return out
