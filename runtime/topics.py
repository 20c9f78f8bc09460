"""Create the topics a service needs when they are missing (idempotent; concurrent creators are fine)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from aiokafka.admin import NewTopic
from aiokafka.errors import TopicAlreadyExistsError, for_code

from runtime.kafka import make_admin
from schemas.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int = 1
    compacted: bool = False
    config: dict[str, str] = field(default_factory=dict)

    def to_new_topic(self, replication_factor: int) -> NewTopic:
        config = dict(self.config)
        if self.compacted:
            config["cleanup.policy"] = "compact"
        return NewTopic(
            name=self.name,
            num_partitions=self.partitions,
            replication_factor=replication_factor,
            topic_configs=config,
        )


def standard_topics(settings: Settings) -> list[TopicSpec]:
    """The six topics of battery-ct, as the services create them when absent."""
    return [
        TopicSpec(settings.topic_scans, settings.topic_partitions),
        TopicSpec(settings.topic_verdicts, settings.topic_partitions),
        TopicSpec(settings.topic_accepted, 1),
        TopicSpec(settings.topic_model_updates, 1, compacted=True),
        TopicSpec(settings.topic_dead_letter, 1),
        TopicSpec(settings.topic_control, 1),
    ]


async def ensure_topics(settings: Settings, specs: list[TopicSpec], *, replication_factor: int = 1) -> list[str]:
    """Create the topics of `specs` that do not exist yet; returns the names created."""
    admin = make_admin(settings)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [spec for spec in specs if spec.name not in existing]
        if not missing:
            return []
        response = await admin.create_topics([spec.to_new_topic(replication_factor) for spec in missing])
        created = []
        for topic, code, *_ in response.topic_errors:
            # Another process may create the same topic between our listing and our request.
            if code == TopicAlreadyExistsError.errno:
                continue
            if code:
                raise for_code(code)(f"cannot create topic {topic}")
            created.append(topic)
        if created:
            log.info("created topics %s", created)
        return created
    finally:
        await admin.close()
