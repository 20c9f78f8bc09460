"""A service process's lifecycle: SIGTERM or SIGINT sets an event the service loops watch; the
service runs until it has finished its work in flight; `python -m` runs it in the foreground."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from runtime.http import PortTaken
from schemas.settings import Settings

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


async def serve_until_signalled(serve: Callable[[asyncio.Event], Awaitable[None]], name: str) -> int:
    """Run `serve(stop)` until SIGTERM or SIGINT sets `stop` and it returns; then 0."""
    shutdown = GracefulShutdown()
    shutdown.install()
    try:
        await serve(shutdown.requested)
    finally:
        shutdown.uninstall()
    log.info("%s stopped", name)
    return 0


def run_service(run: Callable[[Settings], Coroutine[Any, Any, int]], settings: Settings) -> int:
    """Run a service to its end: its exit status, or 2 with one line on stderr when its settings are
    unsafe (runtime.safety) or its port is taken."""
    from runtime.safety import UnsafeSettings, check_safe_to_start

    try:
        check_safe_to_start(settings)
        return asyncio.run(run(settings))
    except (PortTaken, UnsafeSettings) as exc:
        print(f"battery-ct: {exc}", file=sys.stderr)
        return 2


def run_in_foreground(run: Callable[[Settings], Coroutine[Any, Any, int]]) -> int:
    """`python -m consumers.<service>`: settings from the environment, logs to stderr, run."""
    from runtime.installation import clash_exit_status

    if (status := clash_exit_status()) is not None:
        return status
    settings = Settings()
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    return run_service(run, settings)
