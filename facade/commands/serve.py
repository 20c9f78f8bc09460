"""`battery-ct serve api|inference|retrain|review`: run one service in the foreground until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
from typing import Any

from schemas.settings import Settings

DESCRIPTION = """\
Run one battery-ct service in the foreground. Settings come from BATTERY_CT_* environment
variables (Kafka, S3, topics, ...). SIGTERM or Ctrl-C stops a service cleanly: the batch in
flight is finished and committed, and the exit status is 0. A port already taken by another
process is one line naming the setting to change, and exit status 2.
"""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="run a service: api, inference, retrain or review",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    services = parser.add_subparsers(dest="service", metavar="SERVICE", required=True)

    api = services.add_parser(
        "api",
        help="the HTTP facade (/predict, /retrain, /anomaly; OpenAPI at /docs)",
        description="Serve the HTTP facade. Defaults come from BATTERY_CT_API_HOST / BATTERY_CT_API_PORT.",
    )
    api.add_argument("--host", help="address to listen on (default: the api_host setting)")
    api.add_argument("--port", type=int, help="port to listen on (default: the api_port setting)")
    api.set_defaults(handler=_serve_api)

    inference = services.add_parser(
        "inference",
        help="the inference consumer: scans topic in, one verdict per scan out",
        description=(
            "Consume the scans topic in the inference consumer group, judge each scan with the registry's current "
            "model (hot-swapped on promotions and rollbacks) and publish one verdict per scan. Metrics and "
            "/healthz, /readyz on the metrics_port setting (default 9100)."
        ),
    )
    inference.set_defaults(handler=_serve_inference)

    retrain = services.add_parser(
        "retrain",
        help="the retrain consumer: accepted scans in, checkpoints and model updates out",
        description=(
            "Consume accepted scans, retrain, checkpoint, gate and publish model updates (the single writer). "
            "Metrics and /healthz, /readyz on the metrics_port setting (default 9101)."
        ),
    )
    retrain.set_defaults(handler=_serve_retrain)

    review = services.add_parser(
        "review",
        help="the review consumer: verdicts in, the review station's database out",
        description=(
            "Materialise the verdicts topic into the review database (BATTERY_CT_REVIEW_DATABASE_URL; SQLite by "
            "default, PostgreSQL in a plant), one row per cell, exactly once through crashes; the facade's "
            "/review pages show it. Replicas share the partitions (group review_group). Metrics and /healthz, "
            "/readyz on the metrics_port setting (default 9102)."
        ),
    )
    review.set_defaults(handler=_serve_review)


def _serve_inference(args: argparse.Namespace) -> int:
    from consumers.inference.service import run
    from runtime.shutdown import run_service

    return run_service(run, Settings())


def _serve_retrain(args: argparse.Namespace) -> int:
    from consumers.retrain.service import run
    from runtime.shutdown import run_service

    return run_service(run, Settings())


def _serve_review(args: argparse.Namespace) -> int:
    from consumers.review.service import run
    from runtime.shutdown import run_service

    return run_service(run, Settings())


def _serve_api(args: argparse.Namespace) -> int:
    from facade.api.server import run

    settings = Settings()
    host = args.host if args.host is not None else settings.api_host
    port = args.port if args.port is not None else settings.api_port
    return run(settings, host, port)
