"""local_stack.kafka_security and kafka_acls without a broker: the users, the listener settings, the policy."""

from __future__ import annotations

from pathlib import Path

import pytest

from local_stack.errors import InfraError
from local_stack.kafka import kafka_paths, render_config
from local_stack.kafka_acls import SERVICE_USERS, Operation, Resource, acl_table, service_acls
from local_stack.kafka_security import KafkaSecurity
from schemas.settings import Settings


def test_the_users_are_created_at_format_time_with_scram_sha_512() -> None:
    security = KafkaSecurity(users={"retrain": "retrain-secret"}, admin_password="admin-secret")
    assert security.format_args() == [
        "--add-scram",
        "SCRAM-SHA-512=[name=admin,password=admin-secret]",
        "--add-scram",
        "SCRAM-SHA-512=[name=retrain,password=retrain-secret]",
    ]


@pytest.mark.parametrize(
    "users",
    [{"admin": "long-enough"}, {"a b": "long-enough"}, {"x": "short"}, {"x": 'quote"in-it'}, {"x": "a,b=c]d-e"}],
)
def test_names_and_passwords_that_would_break_the_broker_configuration_are_refused(users: dict[str, str]) -> None:
    with pytest.raises(InfraError):
        KafkaSecurity(users=users)


def test_the_secure_configuration_authenticates_every_listener_and_denies_by_default(tmp_path: Path) -> None:
    security = KafkaSecurity(users={})
    config = render_config(tmp_path, broker_port=19092, controller_port=19093, security=security)
    lines = dict(line.split("=", 1) for line in config.read_text().splitlines() if "=" in line and line[0] != "#")
    assert lines["listeners"] == "SASL_PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    assert lines["listener.security.protocol.map"] == "SASL_PLAINTEXT:SASL_PLAINTEXT,CONTROLLER:SASL_PLAINTEXT"
    assert lines["authorizer.class.name"] == "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
    assert lines["allow.everyone.if.no.acl.found"] == "false"
    assert lines["super.users"] == "User:admin;User:controller"
    assert "PLAINTEXT://" not in lines["listeners"].replace("SASL_PLAINTEXT://", "")
    assert config.stat().st_mode & 0o077 == 0  # it holds the super users' passwords
    assert kafka_paths(tmp_path)[2] == config


def test_the_plaintext_configuration_is_unchanged(tmp_path: Path) -> None:
    text = render_config(tmp_path, broker_port=19092, controller_port=19093).read_text()
    assert "listeners=PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093" in text
    assert "authorizer" not in text and "sasl" not in text


def test_only_the_retrain_user_may_write_model_updates_and_only_producers_write_scans() -> None:
    settings = Settings()
    acls = service_acls(settings)

    def writers(topic: str) -> set[str]:
        topic_acls = [a for a in acls if a.resource == Resource.TOPIC and a.name == topic]
        return {a.user for a in topic_acls if a.operation == Operation.WRITE}

    assert writers(settings.topic_model_updates) == {"retrain"}
    assert writers(settings.topic_scans) == {"uploader", "minio"}
    assert writers(settings.topic_accepted) == {"facade"}
    assert writers(settings.topic_verdicts) == {"inference"}
    assert {a.operation for a in acls} == {Operation.READ, Operation.WRITE, Operation.DESCRIBE}
    assert {a.user for a in acls} == set(SERVICE_USERS)
    assert not any(a.resource == Resource.CLUSTER for a in acls)
    prefixed = {(a.user, a.name) for a in acls if a.pattern == "prefixed"}
    assert prefixed == {
        ("inference", f"battery-ct-{settings.inference_group}-"),
        ("retrain", f"battery-ct-{settings.retrain_group}-"),
        ("facade", f"battery-ct-{settings.review_outbox_group}-"),
    }
    assert "facade | topic | ct.model-updates | DESCRIBE, READ" in acl_table(acls)


def test_the_acl_table_of_deploy_md_is_the_policy() -> None:
    """docs/DEPLOY.md's Kafka table (WRITE, READ, group, transactional ids) says what service_acls creates."""
    settings = Settings()
    text = (Path(__file__).resolve().parents[2] / "docs" / "DEPLOY.md").read_text()
    table = text.split("| user | used by | produces to (WRITE)", 1)[1].split("\n\n", 1)[0]
    documented = set()
    for row in table.splitlines()[2:]:
        user, _, writes, reads, group, prefix = (cell.strip() for cell in row.strip("|").split("|"))
        user = user.strip("`")
        for resource, operation, names in (
            (Resource.TOPIC, Operation.WRITE, writes),
            (Resource.TOPIC, Operation.READ, reads),
            (Resource.GROUP, Operation.READ, group),
            (Resource.TRANSACTIONAL_ID, Operation.WRITE, prefix),
        ):
            documented |= {(user, resource, name.strip(), operation) for name in names.split(",") if name.strip()}
    created = {(a.user, a.resource, a.name, a.operation) for a in service_acls(settings)}
    assert documented == {acl for acl in created if acl[3] != Operation.DESCRIBE}
    described = {(a.user, a.name) for a in service_acls(settings) if a.operation == Operation.DESCRIBE}
    every_topic = {settings.topic_scans, settings.topic_verdicts, settings.topic_accepted}
    every_topic |= {settings.topic_model_updates, settings.topic_dead_letter, settings.topic_control}
    assert described == {(user, topic) for user in SERVICE_USERS for topic in every_topic}
