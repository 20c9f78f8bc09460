"""Session fixtures: a real Kafka broker and S3 endpoint, and per-test settings that isolate each test.

`infra_settings` (session): Settings pointing at a running broker and S3 endpoint. Reuses the ones
named by BATTERY_CT_KAFKA_BOOTSTRAP / BATTERY_CT_S3_ENDPOINT when they answer (e.g. after
`eval "$(battery-ct infra up --env)"`), else starts its own once per session through local_stack
(on free ports, state in a temporary directory) and stops them at the end. If they cannot be
started the fixture fails: a test that needs the infrastructure never skips.

`settings` (function): a copy with unique topic names, consumer groups, transactional-id prefix
and bucket names, and its topics created, so tests never see each other's messages.
`object_store` (function): an ObjectStore for `settings` (buckets are made by whoever needs them).
`tiny_checkpoints` (session): three tiny 64 px detectors (v1, v2, v3: different seeds, so different
content and versions), trained once for every test that only needs some model to serve.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from schemas.settings import Settings
from storage.object_store import ObjectStore
from tests.helpers import run_sync, spiral_slice, wait_for_leaders

pytest_plugins = ["tests.postgres_fixture"]


@pytest.fixture(scope="session")
def infra_settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    from local_stack import down, up

    base = Settings()
    session = base.model_copy(update={"state_dir": tmp_path_factory.mktemp("infra")})
    # Our own processes go on free ports: other test sessions on the same machine may hold the defaults.
    infra = up(session, prefer_default_ports=False, reuse_configured=True)
    try:
        yield infra.apply(session)
    finally:
        down(session)
        for process in infra.processes:
            process.poll()  # reaped by `down`; lets Popen know, so it does not warn


def isolated(settings: Settings, suffix: str, work_dir: Path) -> Settings:
    """`settings` with topics, groups, transactional ids and buckets of its own."""
    return settings.model_copy(
        update={
            "topic_scans": f"ct.scans.{suffix}",
            "topic_verdicts": f"ct.verdicts.{suffix}",
            "topic_accepted": f"ct.accepted.{suffix}",
            "topic_model_updates": f"ct.model-updates.{suffix}",
            "topic_dead_letter": f"ct.dead-letter.{suffix}",
            "topic_control": f"ct.control.{suffix}",
            "inference_group": f"battery-ct-inference-{suffix}",
            "retrain_group": f"battery-ct-retrain-{suffix}",
            "review_group": f"battery-ct-review-{suffix}",
            "review_outbox_group": f"battery-ct-review-outbox-{suffix}",
            "review_database_url": SecretStr(f"sqlite:///{work_dir / 'review.db'}"),
            "transactional_id_prefix": f"battery-ct-{suffix}",
            "bucket_scans": f"scans-{suffix}",
            "bucket_models": f"models-{suffix}",
            "bucket_datasets": f"datasets-{suffix}",
            "bucket_heatmaps": f"heatmaps-{suffix}",
            "checkpoint_dir": work_dir,
        }
    )


@pytest.fixture
def settings(infra_settings: Settings, tmp_path: Path) -> Iterator[Settings]:
    from runtime.topics import standard_topics

    mine = isolated(infra_settings, uuid.uuid4().hex[:12], tmp_path / "work")
    topics = [spec.name for spec in standard_topics(mine)]
    run_sync(_create_topics(mine, topics))
    yield mine
    run_sync(_delete_topics(mine, topics))


async def _create_topics(settings: Settings, names: list[str]) -> None:
    from runtime.topics import ensure_topics, standard_topics

    await ensure_topics(settings, standard_topics(settings))
    await wait_for_leaders(settings, names)


async def _delete_topics(settings: Settings, names: list[str]) -> None:
    # A reused broker (a developer's `infra up`) should not fill up with the topics of every test run.
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.errors import KafkaError

    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        await admin.delete_topics(names)
    except KafkaError:
        pass  # best effort: a test may have deleted its own topics
    finally:
        await admin.close()


@pytest.fixture
def object_store(settings: Settings) -> ObjectStore:
    return ObjectStore.from_settings(settings)


@pytest.fixture(scope="session")
def tiny_checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Checkpoint directories `v1`, `v2`, `v3`; treat them as read-only (they are shared)."""
    import numpy as np

    from model_core.network import NetworkConfig
    from model_core.scoring import PatchMemoryConfig
    from model_core.training import TrainingConfig, train_detector

    rng = np.random.default_rng(0)
    normal = np.stack([spiral_slice(rng) for _ in range(12)])
    root = tmp_path_factory.mktemp("tiny-checkpoints")
    out = {}
    for seed, name in enumerate(("v1", "v2", "v3")):
        config = TrainingConfig(
            network=NetworkConfig(image_size=64, depth=2, base_filters=4),
            memory=PatchMemoryConfig.for_image_size(64, bank_per_row=100),
            epochs=1,
            batch_size=8,
            seed=seed,
        )
        out[name] = train_detector(normal, None, config).save(root / name, source=f"tiny-{name}")
    return out
