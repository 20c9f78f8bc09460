"""The one HTTP endpoint of a consumer process: /metrics, /healthz (alive) and /readyz (serving).

A tiny asyncio server, so a consumer needs no web framework; it answers from the event loop, so
/healthz also proves the loop is not blocked.
"""

from __future__ import annotations

import asyncio
import errno
import logging
from dataclasses import dataclass, field

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

log = logging.getLogger(__name__)


@dataclass
class Health:
    """What /readyz reports: ready once the service can do its job, with the reason when it cannot."""

    ready: bool = False
    reason: str = "starting"
    details: dict[str, str] = field(default_factory=dict)

    def set_ready(self) -> None:
        self.ready, self.reason = True, "ok"

    def set_not_ready(self, reason: str) -> None:
        self.ready, self.reason = False, reason


class PortTaken(Exception):  # noqa: N818 (a state of the host, said to the operator)
    """The port is used by another process; says which setting chooses another."""

    def __init__(self, port: int, setting: str) -> None:
        super().__init__(f"port {port} is already in use by another process: set {setting} to a free port")
        self.port = port
        self.setting = setting


class MetricsServer:
    def __init__(self, registry: CollectorRegistry, health: Health, *, host: str = "0.0.0.0", port: int) -> None:
        self._registry = registry
        self._health = health
        self._host = host
        self._port = port
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        """The bound port (the configured one, or the one the OS chose for port 0)."""
        if self._server is None:
            raise RuntimeError("server not started")
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def start(self) -> None:
        try:
            self._server = await asyncio.start_server(self._handle, self._host, self._port)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
            raise PortTaken(self._port, "BATTERY_CT_METRICS_PORT") from exc
        log.info("metrics and health on http://%s:%d/metrics /healthz /readyz", self._host, self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request_line = await asyncio.wait_for(reader.readline(), timeout=5)
            # Headers are read and ignored: every answer is the same whoever asks.
            while await asyncio.wait_for(reader.readline(), timeout=5) not in (b"\r\n", b"\n", b""):
                pass
            status, content_type, body = self._respond(request_line)
            head = (
                f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            )
            writer.write(head.encode() + body)
            await writer.drain()
        except (TimeoutError, ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    def _respond(self, request_line: bytes) -> tuple[str, str, bytes]:
        parts = request_line.decode("latin-1").split()
        if len(parts) < 2 or parts[0] not in ("GET", "HEAD"):
            return "405 Method Not Allowed", "text/plain", b"GET only\n"
        path = parts[1].split("?", 1)[0]
        if path == "/metrics":
            return "200 OK", CONTENT_TYPE_LATEST, generate_latest(self._registry)
        if path == "/healthz":
            return "200 OK", "text/plain", b"ok\n"
        if path == "/readyz":
            if self._health.ready:
                return "200 OK", "text/plain", b"ready\n"
            return "503 Service Unavailable", "text/plain", f"not ready: {self._health.reason}\n".encode()
        return "404 Not Found", "text/plain", b"try /metrics, /healthz or /readyz\n"
