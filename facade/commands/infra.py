"""`battery-ct infra up|down|status [--env]`: the local Kafka broker and S3 endpoint."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

DESCRIPTION = """\
Run a real local Kafka broker (Apache Kafka 3.9, KRaft, one node) and an S3 endpoint (moto's
server) for development, tests and the demo. Needs Java 17 and, on the first run, Maven (it
fetches the broker's jars into BATTERY_CT_KAFKA_LIBS_DIR). State, PIDs and logs live in
BATTERY_CT_STATE_DIR. Typical use:

  eval "$(battery-ct infra up --env)"   # start, and point this shell at it
  battery-ct infra status
  battery-ct infra down
"""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "infra",
        help="start/stop the local Kafka broker and S3 endpoint",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    up = actions.add_parser(
        "up",
        help="start what is not running yet; returns when Kafka and S3 answer",
        description=(
            "Start the Kafka broker and the S3 endpoint unless they already run. Uses the ports of "
            "BATTERY_CT_KAFKA_BOOTSTRAP / BATTERY_CT_S3_ENDPOINT (default 9092, controller 9093, 9000) when "
            "free, else free ones. An endpoint named explicitly by those variables that already answers is "
            "used as it is. Progress goes to stderr; with --env, stdout has only the export lines."
        ),
    )
    up.add_argument("--env", action="store_true", help="print `export BATTERY_CT_...=...` lines on stdout")
    up.set_defaults(handler=_up)

    down = actions.add_parser(
        "down",
        help="stop exactly the processes `up` started, and wait for them",
        description="Stop the Kafka broker and S3 server that `up` started (by recorded PID); wait until they exit.",
    )
    down.add_argument("--purge", action="store_true", help="also delete the broker's data and the logs")
    down.set_defaults(handler=_down)

    status = actions.add_parser(
        "status",
        help="say what runs and where (exit status 0 only when both answer)",
        description="Show the broker and S3 endpoint, their PIDs and logs. Exit status 0 when both answer, else 1.",
    )
    status.add_argument("--env", action="store_true", help="print `export BATTERY_CT_...=...` lines on stdout")
    status.set_defaults(handler=_status)


def _err(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _up(args: argparse.Namespace) -> int:
    from local_stack import InfraError, up
    from local_stack.env import export_lines
    from schemas.settings import Settings

    settings = Settings()
    began = time.monotonic()
    try:
        infra = up(settings)
    except InfraError as exc:
        _err(f"error: {exc}")
        return 2
    except KeyboardInterrupt:
        _err("interrupted: stopped what was being started")
        return 130
    kafka, s3 = infra.state.kafka.endpoint, infra.state.s3.endpoint
    _err(f"ready in {time.monotonic() - began:.1f} s: kafka at {kafka}, s3 at {s3}")
    for record in infra.state.services():
        if record.log is not None:
            _err(f"  {record.name} log: {record.log}")
    if args.env:
        print("\n".join(export_lines(infra.env())), flush=True)
    else:
        _err('point a shell at it with: eval "$(battery-ct infra status --env)"')
    return 0


def _down(args: argparse.Namespace) -> int:
    from local_stack import InfraError, down
    from schemas.settings import Settings

    settings = Settings()
    try:
        stopped = down(settings, purge=args.purge)
    except InfraError as exc:
        _err(f"error: {exc}")
        return 2
    _err(f"stopped {', '.join(r.name for r in stopped)}" if stopped else "nothing was running")
    return 0


def _status(args: argparse.Namespace) -> int:
    from local_stack import status
    from local_stack.env import export_lines, infra_env
    from schemas.settings import Settings

    settings = Settings()
    state, services = status(settings)
    if state is None:
        _err(f"not running (no state in {settings.state_dir}); start it with `battery-ct infra up`")
        return 1
    for service in services:
        _err(service.describe())
    healthy = all(s.answering for s in services)
    if args.env and healthy:
        print("\n".join(export_lines(infra_env(state, settings))), flush=True)
    return 0 if healthy else 1
