"""The ``tricho`` command line: one subcommand per module in ``station.commands``."""
from __future__ import annotations

import argparse
import importlib
import sys

# Each module exposes ``register(subparsers)``; the parser it adds sets ``func(args) -> int``.
COMMAND_MODULES = ("station", "check_config", "analyze", "calibrate", "subscribe")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tricho",
        description="Trichoscope capture station: capture, count hairs, measure thickness, publish.",
        epilog="Run 'tricho COMMAND --help' for the options and an example of each command.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"station.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"station.commands.{name}":
                continue  # command not built yet
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
