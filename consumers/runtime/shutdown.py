"""Graceful shutdown: SIGTERM or SIGINT sets an event the service loops watch."""

from __future__ import annotations

import asyncio
import logging
import os
import signal

log = logging.getLogger(__name__)

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class GracefulShutdown:
    """`install()` on the running loop; `requested` is set by the first signal.

    A second signal means the operator does not want to wait: the default handler is restored, so
    the signal, sent again, ends the process at once.
    """

    def __init__(self) -> None:
        self.requested = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    def install(self) -> None:
        self._loop = asyncio.get_running_loop()
        for sig in SIGNALS:
            self._loop.add_signal_handler(sig, self._on_signal, sig)

    def uninstall(self) -> None:
        if self._loop is None:
            return
        for sig in SIGNALS:
            self._loop.remove_signal_handler(sig)
        self._loop = None

    def request(self, reason: str = "requested") -> None:
        if not self.requested.is_set():
            log.info("shutting down (%s): finishing the current batch", reason)
        self.requested.set()

    def _on_signal(self, sig: signal.Signals) -> None:
        if self.requested.is_set():
            self.uninstall()
            os.kill(os.getpid(), sig)
            return
        self.request(sig.name)
