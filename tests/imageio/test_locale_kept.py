"""GDCM calls leave the process locale (and Python's default text encoding) as they found it."""

from __future__ import annotations

import locale
from pathlib import Path

import numpy as np
from dicom_helpers import itk_image, write_series

from segattn.imageio import list_series, read_scan


def test_writing_and_reading_a_series_keeps_the_locale(tmp_path: Path) -> None:
    before = (locale.setlocale(locale.LC_ALL), locale.getpreferredencoding(False))
    data = np.arange(7 * 6 * 5, dtype=np.int16).reshape(7, 6, 5)
    write_series(tmp_path / "s", itk_image(data, (0.7, 0.8, 2.5), (0.0, 0.0, 0.0), np.eye(3)))
    assert (locale.setlocale(locale.LC_ALL), locale.getpreferredencoding(False)) == before
    assert len(list_series(tmp_path / "s")) == 1
    read_scan(tmp_path / "s")
    assert (locale.setlocale(locale.LC_ALL), locale.getpreferredencoding(False)) == before
