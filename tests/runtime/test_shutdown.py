import asyncio
import os
import signal

from runtime.shutdown import GracefulShutdown


async def test_sigterm_requests_a_graceful_stop() -> None:
    shutdown = GracefulShutdown()
    shutdown.install()
    try:
        os.kill(os.getpid(), signal.SIGTERM)
        await asyncio.wait_for(shutdown.requested.wait(), timeout=5)
        assert shutdown.requested.is_set()
    finally:
        shutdown.uninstall()
