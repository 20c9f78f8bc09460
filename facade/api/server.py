"""`battery-ct serve api`: run the facade under uvicorn until SIGTERM or Ctrl-C."""

from __future__ import annotations

import errno
import logging
import socket
import sys
from typing import Any

import uvicorn

from facade.api.app import create_app
from facade.api.limits import guarded_protocol
from runtime.http import PortTaken
from runtime.safety import UnsafeSettings, check_safe_to_start
from schemas.settings import Settings

log = logging.getLogger(__name__)


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound before anything starts, so a taken port is one clear line."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno != errno.EADDRINUSE:
            raise
        raise PortTaken(port, "BATTERY_CT_API_PORT (or --port)") from exc
    return sock


def uvicorn_config(app: Any, settings: Settings) -> uvicorn.Config:
    """uvicorn as the facade runs it: the h11 protocol with the header limits, the keep-alive timeout."""
    return uvicorn.Config(
        app,
        log_level=settings.log_level.lower(),
        lifespan="on",
        http=guarded_protocol(settings.api_header_timeout_s),
        h11_max_incomplete_event_size=settings.api_max_header_bytes,
        timeout_keep_alive=settings.api_keep_alive_s,
    )


def run(settings: Settings, host: str, port: int) -> int:
    """Serve on host:port; uvicorn handles SIGTERM/SIGINT (finishes requests in flight, runs the
    shutdown) and then raises the signal again, so a stopped facade exits as the signal says (143
    for SIGTERM), as a supervisor expects. 2 with one line on stderr when the port is taken."""
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        check_safe_to_start(settings)
        sock = bind(host, port)
    except (PortTaken, UnsafeSettings) as exc:
        print(f"battery-ct: {exc}", file=sys.stderr)
        return 2
    if settings.api_key is None:
        if settings.allow_anonymous_writes:
            log.warning("no API key and anonymous writes switched on: anyone who reaches %s:%d may retrain", host, port)
        else:
            log.warning("no API key: /retrain, /anomaly, rollback and stored heat maps are refused (401)")
    server = uvicorn.Server(uvicorn_config(create_app(settings), settings))
    log.info("battery-ct facade on http://%s:%d (OpenAPI at /docs)", host, port)
    with sock:
        server.run(sockets=[sock])
    return 0 if server.started else 1
