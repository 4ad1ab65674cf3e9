"""Find the checkpoint that ``--ckpt_path last`` means.

Lightning looks for ``last.ckpt`` in the checkpoint folder of the *new* run (``version_N+1``),
finds nothing and trains from scratch with a warning. We look in every version folder of the run
instead and take the newest ``last*.ckpt``; if there is none, that is an error.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from segattn.errors import SegattnError

_LAST = re.compile(r"^last(-step)?(-v\d+)?\.ckpt$")


def find_last_checkpoint(folders: Iterable[str | Path]) -> Path | None:
    """Newest (by modification time) ``last.ckpt``, ``last-step.ckpt`` (written every N steps)
    or ``last-vN.ckpt`` directly in ``folders``,
    or in their ``version_*/checkpoints`` sub-folders; ``None`` if there is none."""
    found: list[Path] = []
    for folder in folders:
        folder = Path(folder)
        for place in (folder, *sorted(folder.glob("version_*/checkpoints"))):
            if place.is_dir():
                found += [p for p in place.iterdir() if _LAST.match(p.name) and p.is_file()]
    if not found:
        return None
    return max(found, key=lambda p: (p.stat().st_mtime_ns, str(p)))


def resolve_last_checkpoint(folders: Iterable[str | Path]) -> Path:
    """:func:`find_last_checkpoint`, raising a one-line error when nothing is found.

    Raises:
        SegattnError: no ``last.ckpt`` in any of ``folders``.
    """
    folders = [Path(f) for f in folders]
    found = find_last_checkpoint(folders)
    if found is None:
        where = ", ".join(str(f) for f in dict.fromkeys(folders)) or "(no folder)"
        raise SegattnError(
            f"--ckpt_path last: no last.ckpt in {where} (or its version_*/checkpoints); "
            "nothing to resume"
        )
    return found
