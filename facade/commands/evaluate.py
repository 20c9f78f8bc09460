"""`battery-ct evaluate` (placeholder until its issue lands: the owner replaces this module)."""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("evaluate", help="(not yet available)")
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    raise SystemExit("battery-ct evaluate is not available yet")
