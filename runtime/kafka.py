"""Kafka client factories: every consumer and producer of battery-ct is configured here, from Settings.

Consumers never auto-commit and read only committed transactions; producers are idempotent and,
in exactly-once mode, transactional with an id that is stable across restarts of one instance,
so that a restarted instance fences the zombie it replaces.
"""

from __future__ import annotations

import socket
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from schemas.settings import Settings

CLIENT_ID = "battery-ct"


def instance_id(settings: Settings) -> str:
    """The stable id of this process: the setting, else the host name (stable per container)."""
    return settings.instance_id or socket.gethostname()


def transactional_id(settings: Settings, group_id: str) -> str:
    return f"{settings.transactional_id_prefix}-{group_id}-{instance_id(settings)}"


def connection_config(settings: Settings) -> dict[str, Any]:
    """Where the broker is and who this service is to it (every client: consumers, producers, admin)."""
    config: dict[str, Any] = {"bootstrap_servers": settings.kafka_bootstrap}
    if settings.kafka_security_protocol != "PLAINTEXT":
        config |= {
            "security_protocol": settings.kafka_security_protocol,
            "sasl_mechanism": settings.kafka_sasl_mechanism,
            "sasl_plain_username": settings.kafka_username,
            "sasl_plain_password": settings.kafka_password.get_secret_value() if settings.kafka_password else "",
        }
    return config


def make_admin(settings: Settings) -> AIOKafkaAdminClient:
    """An admin client (topic creation) with this service's connection and identity."""
    return AIOKafkaAdminClient(**connection_config(settings), client_id=f"{CLIENT_ID}-admin")


def consumer_config(settings: Settings, *, group_id: str | None, **overrides: Any) -> dict[str, Any]:
    """The configuration of every battery-ct consumer (a pure function: what the tests check)."""
    config: dict[str, Any] = {
        **connection_config(settings),
        "client_id": f"{CLIENT_ID}-{instance_id(settings)}",
        "group_id": group_id,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "isolation_level": "read_committed",
        # A batch can wait behind the model for a while; the loop keeps heartbeating regardless.
        "max_poll_interval_ms": 600_000,
        "retry_backoff_ms": 200,
    }
    config.update(overrides)
    return config


def make_consumer(settings: Settings, *topics: str, group_id: str | None, **overrides: Any) -> AIOKafkaConsumer:
    """A consumer of `topics` in `group_id` (None: no group, partitions assigned by hand)."""
    return AIOKafkaConsumer(*topics, **consumer_config(settings, group_id=group_id, **overrides))


def producer_config(settings: Settings, *, transactional_id: str | None = None, **overrides: Any) -> dict[str, Any]:
    """The configuration of every battery-ct producer: idempotent; transactional with `transactional_id`."""
    config: dict[str, Any] = {
        **connection_config(settings),
        "client_id": f"{CLIENT_ID}-{instance_id(settings)}",
        "enable_idempotence": True,
        "acks": "all",
        "linger_ms": 5,
        "retry_backoff_ms": 200,
        "request_timeout_ms": 30_000,
    }
    if transactional_id is not None:
        config["transactional_id"] = transactional_id
    config.update(overrides)
    return config


def make_producer(settings: Settings, *, transactional_id: str | None = None, **overrides: Any) -> AIOKafkaProducer:
    """An idempotent producer; transactional when `transactional_id` is given."""
    return AIOKafkaProducer(**producer_config(settings, transactional_id=transactional_id, **overrides))
