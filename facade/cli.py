"""The `battery-ct` command line: one subcommand group per module in `facade/commands/`.

Each command module exposes `register(subparsers)`; heavy imports (TensorFlow, aiokafka) happen
inside the command functions so that `battery-ct --help` answers at once.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

COMMAND_MODULES = (
    "synth",
    "train",
    "score",
    "evaluate",
    "infra",
    "serve",
    "upload",
    "checkpoints",
    "recipes",
    "measure",
    "review",
    "demo",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="battery-ct",
        description=(
            "Find defective EV battery cells in CT scans. Settings come from BATTERY_CT_* "
            "environment variables (see the README's settings table)."
        ),
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        module = importlib.import_module(f"facade.commands.{name}")
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from runtime.installation import clash_exit_status

    if (status := clash_exit_status()) is not None:
        return status
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    result: int = args.handler(args)
    return result


if __name__ == "__main__":
    raise SystemExit(main())
