"""A secure local broker (SASL/SCRAM-SHA-512, StandardAuthorizer, battery-ct's service ACLs), used through
battery-ct's own client factories with each service's credentials.

Only the retrain consumer's user may publish a model update: the facade's is refused, and so is every
other service's; the facade may publish accepted scans and read model updates; a wrong password
does not connect at all. The broker is this module's own (its ports, its state directory) and is
stopped at the end.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pytest
from aiokafka.errors import ClusterAuthorizationFailedError, KafkaError, TopicAuthorizationFailedError

from local_stack.kafka_acls import SERVICE_USERS, service_acls
from local_stack.kafka_security import KafkaSecurity, client_settings, new_password
from runtime.kafka import make_consumer, make_producer, transactional_id
from runtime.topics import ensure_topics, standard_topics
from schemas.settings import Settings
from tests.conftest import isolated
from tests.helpers import run_sync

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def secure_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Settings, KafkaSecurity]]:
    """A broker with one SCRAM user per service and the service ACLs for this module's topic names."""
    from local_stack.free_ports import pick_port
    from local_stack.jars import ensure_kafka_libs
    from local_stack.kafka import start_kafka
    from local_stack.processes import stop

    root = tmp_path_factory.mktemp("secure-broker")
    names = isolated(Settings(), uuid.uuid4().hex[:12], root / "work")
    security = KafkaSecurity(users={user: new_password() for user in SERVICE_USERS})
    libs = ensure_kafka_libs(names.kafka_libs_dir)
    broker_port = pick_port(None)
    controller_port = pick_port(None, avoid={broker_port})
    record, process = start_kafka(
        root / "broker",
        libs,
        broker_port=broker_port,
        controller_port=controller_port,
        security=security,
        acls=service_acls(names),
    )
    try:
        settings = names.model_copy(update={"kafka_bootstrap": record.endpoint, "instance_id": "acl-test"})
        run_sync(ensure_topics(security.settings_of(settings, "admin"), standard_topics(settings)))
        yield settings, security
    finally:
        if record.pid is not None:
            stop(record.pid, record.start_ticks)
        process.wait(timeout=30)


async def publish(settings: Settings, topic: str, value: bytes, *, transactional: str | None = None) -> None:
    producer = make_producer(settings, transactional_id=transactional, request_timeout_ms=15_000)
    await producer.start()
    try:
        if transactional is None:
            await producer.send_and_wait(topic, value, key=b"k")
        else:
            async with producer.transaction():
                await producer.send(topic, value, key=b"k")
    finally:
        await producer.stop()


async def read_one(settings: Settings, topic: str) -> bytes | None:
    consumer = make_consumer(settings, topic, group_id=None)
    await consumer.start()
    try:
        record = await asyncio.wait_for(consumer.getone(), 30)
    finally:
        await consumer.stop()
    return record.value


async def test_the_retrain_user_publishes_a_model_update_the_facade_reads(
    secure_broker: tuple[Settings, KafkaSecurity],
) -> None:
    settings, security = secure_broker
    retrain = security.settings_of(settings, "retrain")
    # As the retrain consumer does: in a transaction, with its own transactional id.
    tid = transactional_id(retrain, retrain.retrain_group)
    await publish(retrain, settings.topic_model_updates, b"promoted", transactional=tid)
    assert await read_one(security.settings_of(settings, "facade"), settings.topic_model_updates) == b"promoted"


@pytest.mark.parametrize("user", [u for u in SERVICE_USERS if u != "retrain"])
async def test_no_other_user_may_publish_a_model_update(
    secure_broker: tuple[Settings, KafkaSecurity], user: str
) -> None:
    settings, security = secure_broker
    # A user that may write nowhere (review) is refused earlier, at the idempotent producer's id.
    with pytest.raises((TopicAuthorizationFailedError, ClusterAuthorizationFailedError)):
        await publish(security.settings_of(settings, user), settings.topic_model_updates, b"forged")


async def test_the_facade_publishes_accepted_scans_and_the_retrain_user_reads_them(
    secure_broker: tuple[Settings, KafkaSecurity],
) -> None:
    settings, security = secure_broker
    await publish(security.settings_of(settings, "facade"), settings.topic_accepted, b"accepted")
    assert await read_one(security.settings_of(settings, "retrain"), settings.topic_accepted) == b"accepted"
    # The facade may read them too (its review outbox's bookmark is an offset on them); no one else does.
    for user in ("inference", "review", "uploader"):
        with pytest.raises(TopicAuthorizationFailedError):
            await read_one(security.settings_of(settings, user), settings.topic_accepted)


async def test_the_facade_cannot_use_the_retrain_consumers_transactional_id(
    secure_broker: tuple[Settings, KafkaSecurity],
) -> None:
    settings, security = secure_broker
    facade = security.settings_of(settings, "facade")
    with pytest.raises(KafkaError):
        theirs = transactional_id(facade, facade.retrain_group)
        await publish(facade, settings.topic_accepted, b"x", transactional=theirs)


@pytest.mark.parametrize("user", SERVICE_USERS)
async def test_each_services_start_up_topic_check_passes_without_creating_anything(
    secure_broker: tuple[Settings, KafkaSecurity], user: str
) -> None:
    settings, security = secure_broker
    assert await ensure_topics(security.settings_of(settings, user), standard_topics(settings)) == []


async def test_a_wrong_password_does_not_connect(secure_broker: tuple[Settings, KafkaSecurity]) -> None:
    settings, _ = secure_broker
    with pytest.raises(KafkaError):
        await publish(client_settings(settings, "retrain", new_password()), settings.topic_model_updates, b"x")
    with pytest.raises(KafkaError):
        await publish(settings, settings.topic_model_updates, b"x")  # PLAINTEXT, no user at all
