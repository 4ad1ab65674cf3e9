"""Entry point of the ``segattn`` console script.

Each sub-command lives in its own module exposing ``add_parser(subparsers)`` and ``run(args)``.
User errors (:class:`segattn.errors.SegattnError`) become one line on stderr and exit code 2;
``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from segattn import __version__
from segattn.errors import SegattnError

# sub-command name -> module under segattn.cli
COMMANDS = {
    "demo": "segattn.cli.demo",
    "train": "segattn.cli.train",
    "preprocess": "segattn.cli.preprocess",
    "predict": "segattn.cli.predict",
    "evaluate": "segattn.cli.evaluate",
    "modules": "segattn.cli.modules",
    "bench": "segattn.cli.bench",
    "ablate": "segattn.cli.ablate",
    "explain": "segattn.cli.explain",
}
# sub-commands whose arguments go to LightningCLI untouched
LIGHTNING_COMMANDS = ("train", "preprocess")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="segattn",
        description="Attention U-Nets for 2D/3D medical image segmentation.",
    )
    parser.add_argument("--version", action="version", version=f"segattn {__version__}")
    parser.add_argument(
        "--debug", action="store_true", help="show full tracebacks instead of one-line errors"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for module_name in COMMANDS.values():
        importlib.import_module(module_name).add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``segattn`` with ``argv`` (default ``sys.argv[1:]``); returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    # `segattn train|preprocess ...` hand everything after the command to LightningCLI untouched.
    head = argv[1:2] if argv[:1] == ["--debug"] else argv[:1]
    if head and head[0] in LIGHTNING_COMMANDS:
        rest = argv[argv.index(head[0]) + 1 :]
        return _guard(lambda: _run_lightning(head[0], rest), debug)
    parser = build_parser()
    args = parser.parse_args(argv)
    return _guard(lambda: args.func(args), debug)


def _run_lightning(command: str, rest: list[str]) -> int:
    if command == "preprocess":
        from segattn.cli.preprocess import run_preprocess

        return run_preprocess(rest)
    from segattn.cli.train import run_lightning_cli

    return run_lightning_cli(rest)


def _guard(fn, debug: bool) -> int:  # type: ignore[no-untyped-def]
    try:
        code = fn()
    except SegattnError as err:
        if debug:
            raise
        print(f"segattn: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("segattn: interrupted", file=sys.stderr)
        return 130
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
