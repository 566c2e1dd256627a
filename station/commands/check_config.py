"""``tricho check-config FILE``: validate a config file and print the effective config."""
from __future__ import annotations

import argparse
import sys

from station import config as cfgmod


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "check-config",
        help="validate a config file and print the effective config",
        description="Validate a station config file (TOML) and print every key with its effective "
                    "value (defaults filled in, secrets masked). Exit status 0 when valid, 2 when not.",
        epilog="example:\n  tricho check-config /etc/tricho/station.toml",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("file", help="the TOML config file")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        cfg = cfgmod.load(args.file)
    except cfgmod.ConfigError as exc:
        print(f"check-config: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(f"# {args.file}: valid. Effective config (defaults filled in, secrets masked):\n")
    sys.stdout.write(cfgmod.to_toml(cfg))
    return 0
