"""``segattn modules``: every registered attention module with its paper, cost and gate range."""

from __future__ import annotations

import argparse

from segattn.errors import SegattnError


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "modules",
        help="list the attention modules with their papers, parameters and multiply-adds",
        description=(
            "Build every registered attention module with its default options and print its "
            "paper, parameter count and the multiply-adds of one forward pass (convolutions and "
            "matrix products; elementwise gating is about C*|S| more for every module) for a "
            "2D and a 3D input, and its gate range. All numbers are measured on the modules."
        ),
    )
    parser.add_argument("--channels", type=int, default=64, help="feature width C (default 64)")
    parser.add_argument(
        "--size-2d", type=int, nargs=2, default=[64, 64], metavar=("H", "W"), help="2D input size"
    )
    parser.add_argument(
        "--size-3d",
        type=int,
        nargs=3,
        default=[32, 32, 32],
        metavar=("D", "H", "W"),
        help="3D input size",
    )
    parser.add_argument("--exact", action="store_true", help="exact counts, no k/M/G")
    parser.add_argument("--links", action="store_true", help="also list each paper's link")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from segattn.attention.stats import format_module_table, module_table

    if args.channels < 1 or min(args.size_2d + args.size_3d) < 1:
        raise SegattnError("--channels and the sizes must be positive")
    try:
        rows = module_table(args.channels, args.size_2d, args.size_3d)
    except ValueError as err:
        raise SegattnError(
            f"cannot build the modules at --channels {args.channels}: {err}"
        ) from None
    print(
        f"{len(rows)} attention modules, C = {args.channels}, default options "
        "(MACs: convolutions and matrix products of one forward pass, batch 1)"
    )
    print(format_module_table(rows, exact=args.exact))
    if args.links:
        print()
        for row in rows:
            print(f"{row.name:<9} {row.url}")
    return 0
