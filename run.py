#!/usr/bin/env python3
"""Bootstrap and run segattn from a checkout, needing nothing but Python >= 3.10.

    python3 run.py demo [--out DIR]     # train + predict + evaluate on generated data
    python3 run.py test [PYTEST ARGS]   # the whole test suite
    python3 run.py lint                 # ruff check, ruff format --check, mypy segattn
    python3 run.py segattn ARGS         # any segattn command, e.g. `segattn predict ...`

The first call creates ``.venv`` and installs segattn (editable) with its dependencies in one pip
command; later calls reinstall only when ``pyproject.toml`` or the torch spec changed.
Environment: ``SEGATTN_TORCH`` is the torch requirement (default ``torch==2.13.0``, the CPU wheel on
these machines; e.g. ``SEGATTN_TORCH="torch==2.13.0 --index-url ..."`` for a CUDA build),
``SEGATTN_VENV`` the environment folder (default ``.venv``).
"""

from __future__ import annotations

import hashlib
import os
import shlex
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = Path(os.environ.get("SEGATTN_VENV", ROOT / ".venv"))
TORCH = os.environ.get("SEGATTN_TORCH", "torch==2.13.0")
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PY = BIN / ("python.exe" if os.name == "nt" else "python")


def ensure_env() -> None:
    if sys.version_info < (3, 10):  # noqa: UP036 (run.py must explain itself on old Pythons)
        sys.exit(f"segattn needs Python >= 3.10, this is {sys.version.split()[0]}")
    if not PY.exists():
        print(f"[run.py] creating virtual environment {VENV}", file=sys.stderr)
        venv.EnvBuilder(with_pip=True).create(VENV)
    stamp = VENV / ".segattn-install"
    key = hashlib.sha256((ROOT / "pyproject.toml").read_bytes() + TORCH.encode()).hexdigest()
    if stamp.exists() and stamp.read_text().strip() == key:
        return
    print(f"[run.py] installing segattn[dev] with {TORCH}", file=sys.stderr)
    cmd = [str(PY), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    cmd += [*shlex.split(TORCH), "-e", f"{ROOT}[dev]"]
    subprocess.run(cmd, check=True)
    stamp.write_text(key)


def run(cmd: list[str]) -> int:
    env = dict(os.environ)
    env.setdefault("TORCHINDUCTOR_CACHE_DIR", str(ROOT / ".cache" / "torchinductor"))
    env.setdefault("MPLBACKEND", "Agg")
    return subprocess.call(cmd, cwd=ROOT, env=env)


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if argv else 2
    what, rest = argv[0], argv[1:]
    ensure_env()
    if what == "demo":
        return run([str(BIN / "segattn"), "demo", *rest])
    if what == "test":
        return run([str(PY), "-m", "pytest", *rest])
    if what == "lint":
        codes = [
            run([str(BIN / "ruff"), "check", "."]),
            run([str(BIN / "ruff"), "format", "--check", "."]),
            run([str(BIN / "mypy"), "segattn"]),
        ]
        return max(codes)
    if what == "segattn":
        return run([str(BIN / "segattn"), *rest])
    print(f"unknown command {what!r}; see `python3 run.py --help`", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
