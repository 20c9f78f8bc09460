from runtime.kafka import (
    consumer_config,
    instance_id,
    make_consumer,
    make_producer,
    producer_config,
    transactional_id,
)
from runtime.topics import standard_topics
from schemas.settings import Settings


def test_transactional_id_is_stable_per_instance() -> None:
    a = Settings(instance_id="a", transactional_id_prefix="p")
    assert transactional_id(a, "g") == "p-g-a"
    assert transactional_id(a, "g") == transactional_id(Settings(instance_id="a", transactional_id_prefix="p"), "g")
    assert transactional_id(Settings(instance_id="b", transactional_id_prefix="p"), "g") != "p-g-a"
    assert instance_id(Settings(instance_id="")) != ""


async def test_consumers_read_committed_and_never_auto_commit() -> None:
    consumer = consumer_config(Settings(), group_id="g")
    assert consumer["enable_auto_commit"] is False
    assert consumer["isolation_level"] == "read_committed"
    producer = producer_config(Settings(), transactional_id="tx")
    assert producer["transactional_id"] == "tx"
    assert producer["enable_idempotence"] is True and producer["acks"] == "all"
    assert "transactional_id" not in producer_config(Settings())
    # aiokafka accepts exactly these keyword arguments
    assert make_consumer(Settings(), "t", group_id="g") is not None
    assert make_producer(Settings(), transactional_id="tx") is not None


def test_model_updates_topic_is_compacted() -> None:
    specs = {spec.name: spec for spec in standard_topics(Settings(topic_partitions=6))}
    assert specs["ct.model-updates"].compacted
    assert specs["ct.scans"].partitions == 6
    assert specs["ct.model-updates"].to_new_topic(1).topic_configs["cleanup.policy"] == "compact"
