"""The ``segattn`` command line: thin wrappers that parse, call the library and print."""

from __future__ import annotations
