"""Does an endpoint answer? A Kafka metadata request, or any HTTP response from an S3 endpoint."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import urllib.error
import urllib.request
from collections.abc import Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion from sync code, even when the caller is inside an event loop."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="battery-ct-probe") as pool:
        return pool.submit(asyncio.run, coro).result()


@contextlib.contextmanager
def _quiet_aiokafka() -> Iterator[None]:
    # While a broker starts, every refused connection is an ERROR line in aiokafka's log: expected here.
    logger = logging.getLogger("aiokafka")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


async def _kafka_brokers(bootstrap: str, timeout_s: float, security: dict[str, str]) -> int:
    from aiokafka.client import AIOKafkaClient
    from aiokafka.errors import KafkaError

    client = AIOKafkaClient(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout_s * 1000), **security)
    try:
        async with asyncio.timeout(timeout_s):
            await client.bootstrap()
        return len(client.cluster.brokers())
    except (KafkaError, OSError, TimeoutError):
        return 0
    finally:
        await client.close()


def kafka_answers(bootstrap: str, *, timeout_s: float = 3.0, **security: str) -> bool:
    """True when the broker answers a metadata request and lists at least one (unfenced) broker.

    `security`: aiokafka's connection arguments (security_protocol, sasl_mechanism,
    sasl_plain_username, sasl_plain_password) for a broker that authenticates its clients.
    """
    if not bootstrap.strip():
        return False
    with _quiet_aiokafka():
        return run_async(_kafka_brokers(bootstrap, timeout_s, security)) > 0


def s3_answers(endpoint: str, *, secure: bool = False, timeout_s: float = 2.0) -> bool:
    """True when an HTTP server answers at the endpoint (any status: S3 says 403 to anonymous callers)."""
    scheme = "https" if secure else "http"
    try:
        with urllib.request.urlopen(f"{scheme}://{endpoint}/", timeout=timeout_s):
            return True
    except urllib.error.HTTPError:
        return True
    except (urllib.error.URLError, OSError, ValueError):
        return False
