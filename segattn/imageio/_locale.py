"""Keep the process locale across GDCM calls.

GDCM (inside SimpleITK) can leave the C locale at ``C`` after reading or writing DICOM (seen when
writing a series). Python then reads and writes text files as ASCII for the rest of the process,
e.g. ``torch.compile`` fails on its own UTF-8 templates.
"""

from __future__ import annotations

import locale
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def locale_kept() -> Iterator[None]:
    """Restore the process locale (``LC_ALL``) when the block ends, if it was changed."""
    saved = locale.setlocale(locale.LC_ALL)
    try:
        yield
    finally:
        if locale.setlocale(locale.LC_ALL) != saved:
            locale.setlocale(locale.LC_ALL, saved)
