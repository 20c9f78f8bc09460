"""`battery-ct serve api`: run the facade under uvicorn until SIGTERM or Ctrl-C."""

from __future__ import annotations

import logging

import uvicorn

from facade.api.app import create_app
from schemas.settings import Settings

log = logging.getLogger(__name__)


def run(settings: Settings, host: str, port: int) -> int:
    """Serve on host:port; uvicorn handles SIGTERM/SIGINT (finishes requests in flight). 0 on a clean stop."""
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_app(settings)
    config = uvicorn.Config(app, host=host, port=port, log_level=settings.log_level.lower(), lifespan="on")
    server = uvicorn.Server(config)
    log.info("battery-ct facade on http://%s:%d (OpenAPI at /docs)", host, port)
    server.run()
    return 0 if server.started else 1
