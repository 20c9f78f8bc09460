"""Limits on everything a stranger can send the facade: the body's size (413), the headers' size
(431), how long a client may take to send its headers (the connection is closed), and how many
requests run at once (503 with Retry-After). Health and metrics stay answerable under load.

The header limits live in the HTTP protocol (uvicorn's h11 implementation, subclassed below);
the body and concurrency limits in a pure ASGI middleware in front of the app.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any

import h11
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from schemas.api import ErrorBody

# Probes must answer when the facade is busy: that is when someone looks.
UNLIMITED_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
RETRY_AFTER_S = 1
DEFAULT_HEAD_LIMIT = 16 * 1024  # h11's own default


class BodyTooLarge(Exception):  # noqa: N818 (a state of the request)
    """The request body grew past the limit while it was read."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the request body is larger than the {limit} bytes accepted")
        self.limit = limit


def _error(status: int, code: str, message: str, headers: Sequence[tuple[bytes, bytes]] = ()) -> list[Message]:
    body = json.dumps(ErrorBody(code=code, message=message).model_dump()).encode()
    return [
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *headers],
        },
        {"type": "http.response.body", "body": body},
    ]


class RequestLimits:
    """Pure ASGI middleware: body size and concurrent requests."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int, max_concurrent: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.max_concurrent = max_concurrent
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") in UNLIMITED_PATHS:
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_body_bytes:
            for message in _error(413, "body_too_large", str(BodyTooLarge(self.max_body_bytes))):
                await send(message)
            return
        if self.in_flight >= self.max_concurrent:
            retry = [(b"retry-after", str(RETRY_AFTER_S).encode())]
            for message in _error(503, "overloaded", "too many requests at once: retry shortly", retry):
                await send(message)
            return
        self.in_flight += 1
        try:
            await self._within_body_limit(scope, receive, send)
        finally:
            self.in_flight -= 1

    async def _within_body_limit(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The app, with a body counted as it is read (chunked bodies declare no length): past the
        limit this answers 413 itself, tells the app the client left, and drops what the app sends."""
        seen, answered, started = 0, False, False

        async def counted() -> Message:
            nonlocal seen, answered
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body_bytes:
                    if not started and not answered:
                        answered = True
                        for reply in _error(413, "body_too_large", str(BodyTooLarge(self.max_body_bytes))):
                            await send(reply)
                    return {"type": "http.disconnect"}
            return message

        async def guarded(message: Message) -> None:
            nonlocal started
            if answered:
                return
            started = True
            await send(message)

        await self.app(scope, counted, guarded)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol that closes a client which has not sent its request headers within
    `header_timeout_s` (slowloris: many connections that trickle bytes), and answers a request head
    longer than `h11_max_incomplete_event_size` with 431 (h11 itself only limits a head that arrives
    in pieces)."""

    header_timeout_s = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_deadline: asyncio.TimerHandle | None = None
        self._head_limit: int = self.config.h11_max_incomplete_event_size or DEFAULT_HEAD_LIMIT

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_deadline()
        super().connection_lost(exc)

    def handle_events(self) -> None:
        super().handle_events()
        if self.conn.their_state is not h11.IDLE:  # the headers are in (or the connection is done)
            self._disarm_header_deadline()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm_header_deadline()  # the next request on a kept-alive connection gets its own

    def data_received(self, data: bytes) -> None:
        if self.conn.their_state is h11.IDLE:  # still reading a request's head
            head = self.conn.trailing_data[0] + data
            end = head.find(b"\r\n\r\n")
            if (end if end >= 0 else len(head)) > self._head_limit:
                self._send_431()
                return
        super().data_received(data)

    def _send_431(self) -> None:
        # Written by hand: h11 has seen no request it could answer.
        body = b"request headers too large\n"
        self.transport.write(
            b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: text/plain; charset=utf-8\r\n"
            + f"content-length: {len(body)}\r\nconnection: close\r\n\r\n".encode()
            + body
        )
        self.transport.close()

    def _arm_header_deadline(self) -> None:
        self._disarm_header_deadline()
        self._header_deadline = self.loop.call_later(self.header_timeout_s, self._headers_too_slow)

    def _disarm_header_deadline(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _headers_too_slow(self) -> None:
        self._header_deadline = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()


def guarded_protocol(header_timeout_s: float) -> type[GuardedH11Protocol]:
    """The protocol class for uvicorn's `http=` option, with this deadline for request headers."""
    return type("GuardedH11Protocol", (GuardedH11Protocol,), {"header_timeout_s": header_timeout_s})
