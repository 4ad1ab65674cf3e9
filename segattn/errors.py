"""Exceptions that the command line turns into one clear line on stderr."""

from __future__ import annotations

from pathlib import Path


class SegattnError(Exception):
    """A user-facing error: bad input, a missing file, a refused checkpoint.

    The CLI prints ``segattn: error: <message>`` without a traceback and exits non-zero.
    """


class InputFileError(SegattnError):
    """A problem with one named file; the message starts with the path."""

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}")
