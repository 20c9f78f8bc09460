"""`battery-ct train` (placeholder until its issue lands: the owner replaces this module)."""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("train", help="(not yet available)")
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    raise SystemExit("battery-ct train is not available yet")
