"""``microcnn <command>``: a thin front over the public API.

Each command lives in ``microcnn/commands/<name>.py`` and exposes ``add_parser(subparsers)``, which
registers its arguments and sets ``func(args) -> int`` (the exit code). Modules are imported only when the
command list is built, and heavy libraries only inside ``func``, so ``microcnn --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

# Command modules, in the order ``--help`` lists them.
COMMANDS = (
    "info",
    "demo",
    "synth",
    "pack",
    "inspect",
    "describe",
    "train",
    "evaluate",
    "cv",
    "predict",
    "predict_h5",
    "export",
)


def build_parser() -> argparse.ArgumentParser:
    from microcnn import __version__

    parser = argparse.ArgumentParser(
        prog="microcnn",
        description="CNN-based analysis of materials micrographs (SEM, optical).",
    )
    parser.add_argument("--version", action="version", version=f"microcnn {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"microcnn.commands.{name}").add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from microcnn.errors import MicrocnnError

    try:
        return int(args.func(args) or 0)
    except MicrocnnError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
