"""docker-compose.yml: valid for docker compose with the example env file, and shaped as the
deployment needs (pinned images, scalable inference, health-gated start order, no secrets, least
privilege: one Kafka user and one MinIO account per service, nothing but the API beyond localhost,
the review database in PostgreSQL)."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import time
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from schemas.settings import Settings
from tests.deploy.deploy_files import KAFKA_START, MINIO_INIT, REPO, published_host_ips

ENV_EXAMPLE = REPO / ".env.example"


def compose_command() -> list[str]:
    """`docker compose` (v2 plugin) where installed, else Debian's `docker-compose`; CI installs one."""
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    legacy = shutil.which("docker-compose")
    assert legacy is not None, "neither `docker compose` nor `docker-compose` found: apt-get install docker-compose"
    return [legacy]


def compose(*args: str, env_file: Path = ENV_EXAMPLE) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*compose_command(), "--env-file", str(env_file), "--project-directory", str(REPO), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def resolved() -> dict[str, Any]:
    """The compose file as docker compose resolves it with the example env and the demo profile."""
    result = compose("--profile", "demo", "config")
    assert result.returncode == 0, result.stderr
    loaded: dict[str, Any] = yaml.safe_load(result.stdout)
    return loaded


def test_docker_compose_config_is_valid_with_the_example_env() -> None:
    result = compose("config", "-q")
    assert result.returncode == 0, result.stderr


def test_a_missing_secret_is_refused_with_its_name(tmp_path: Path) -> None:
    env = tmp_path / "incomplete.env"
    kept = [line for line in ENV_EXAMPLE.read_text().splitlines() if "MINIO_ROOT_PASSWORD" not in line]
    env.write_text("\n".join(kept))
    result = compose("config", "-q", env_file=env)
    assert result.returncode != 0
    assert "MINIO_ROOT_PASSWORD" in result.stderr


def test_every_image_is_pinned(resolved: dict[str, Any]) -> None:
    for name, service in resolved["services"].items():
        image = service["image"]
        assert ":" in image and not image.endswith(":latest"), f"{name}: {image}"
    services = resolved["services"]
    assert services["kafka"]["image"].startswith("apache/kafka:3.9.")
    assert re.fullmatch(r"quay\.io/minio/minio:RELEASE\.\d{4}-\d\d-\d\dT\d\d-\d\d-\d\dZ", services["minio"]["image"])
    assert re.fullmatch(r"quay\.io/minio/mc:RELEASE\.\d{4}-\d\d-\d\dT\d\d-\d\d-\d\dZ", services["minio-init"]["image"])
    assert re.fullmatch(r"postgres:16(\.\d+)?", services["postgres"]["image"])  # the major version holds the data


def test_kafka_keeps_transactions_working_on_one_node(resolved: dict[str, Any]) -> None:
    assert resolved["services"]["kafka"]["entrypoint"] == ["/bin/bash", "/battery-ct/start.sh"]
    script = KAFKA_START.read_text()
    assert "process.roles=broker,controller" in script
    assert "transaction.state.log.replication.factor=1" in script
    assert "transaction.state.log.min.isr=1" in script
    assert "offsets.topic.replication.factor=1" in script


def test_an_upload_alone_produces_the_scan_event(resolved: dict[str, Any]) -> None:
    minio_env = resolved["services"]["minio"]["environment"]
    assert minio_env["MINIO_NOTIFY_KAFKA_ENABLE_PRIMARY"] == "on"
    assert minio_env["MINIO_NOTIFY_KAFKA_BROKERS_PRIMARY"] == "kafka:9092"
    assert minio_env["MINIO_NOTIFY_KAFKA_SASL_PRIMARY"] == "on"
    assert minio_env["MINIO_NOTIFY_KAFKA_SASL_MECHANISM_PRIMARY"] == "sha512"
    assert minio_env["MINIO_NOTIFY_KAFKA_SASL_USERNAME_PRIMARY"] == "minio"
    scans_topic = resolved["services"]["inference"]["environment"].get("BATTERY_CT_TOPIC_SCANS", "ct.scans")
    assert minio_env["MINIO_NOTIFY_KAFKA_TOPIC_PRIMARY"] == scans_topic
    script = MINIO_INIT.read_text()
    assert 'mc event add "$ALIAS/$BATTERY_CT_BUCKET_SCANS" "$ARN" --event put' in script
    assert 'ARN="arn:minio:sqs::PRIMARY:kafka"' in script


def test_inference_scales_and_everything_starts_after_its_dependencies_are_healthy(resolved: dict[str, Any]) -> None:
    services = resolved["services"]
    inference = services["inference"]
    # A fixed container name or host port would make `--scale inference=3` fail.
    assert "container_name" not in inference and "ports" not in inference
    for name in ("inference", "retrain", "api"):
        depends = services[name]["depends_on"]
        assert depends["minio-init"]["condition"] == "service_completed_successfully", name
    for name in ("inference", "retrain", "review", "api"):
        depends = services[name]["depends_on"]
        assert depends["topics-init"]["condition"] == "service_completed_successfully", name
    for name in ("review", "api"):
        assert services[name]["depends_on"]["postgres"]["condition"] == "service_healthy", name
    assert services["topics-init"]["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert services["minio-init"]["depends_on"]["minio"]["condition"] == "service_healthy"
    for name in ("kafka", "minio", "postgres", "prometheus", "grafana"):
        assert services[name]["healthcheck"]["test"], name
    review = services["review"]
    assert "container_name" not in review and "ports" not in review  # scales like inference


def test_the_demo_profile_streams_simulated_scans(resolved: dict[str, Any]) -> None:
    services = resolved["services"]
    assert services["simulator"]["profiles"] == ["demo"]
    assert services["model-bootstrap"]["profiles"] == ["demo"]
    loop = " ".join(services["simulator"]["command"])
    assert "battery-ct synth" in loop and "battery-ct upload --no-event" in loop
    default = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    assert "profiles" not in default["services"]["inference"]


def test_no_secret_is_written_in_the_compose_file() -> None:
    text = (REPO / "docker-compose.yml").read_text()
    for line in text.splitlines():
        if re.search(r"(PASSWORD|SECRET|API_KEY|ACCESS_KEY)\w*:\s", line):
            assert "${" in line, f"literal secret in docker-compose.yml: {line.strip()}"
    assert "change-me" not in text


def test_state_lives_in_named_volumes(resolved: dict[str, Any]) -> None:
    assert {"kafka-data", "minio-data", "postgres-data", "prometheus-data", "grafana-data"} <= set(resolved["volumes"])
    assert "postgres-data:/var/lib/postgresql/data:rw" in [
        volume if isinstance(volume, str) else f"{volume['source']}:{volume['target']}:rw"
        for volume in resolved["services"]["postgres"]["volumes"]
    ]


def test_the_review_database_is_postgres_for_the_review_consumer_and_the_facade(resolved: dict[str, Any]) -> None:
    services = resolved["services"]
    postgres = services["postgres"]["environment"]
    assert postgres["POSTGRES_USER"] == postgres["POSTGRES_DB"] == "battery_ct"
    example = {
        line.split("=", 1)[0]: line.split("=", 1)[1] for line in ENV_EXAMPLE.read_text().splitlines() if "=" in line
    }
    assert postgres["POSTGRES_PASSWORD"] == example["POSTGRES_PASSWORD"]  # from .env, like every secret
    url = f"postgresql+psycopg://battery_ct:{postgres['POSTGRES_PASSWORD']}@postgres:5432/battery_ct"
    for name in ("review", "api"):
        assert services[name]["environment"]["BATTERY_CT_REVIEW_DATABASE_URL"] == url, name
    assert services["review"]["command"] == ["serve", "review"]
    assert services["review"]["image"] == services["inference"]["image"]
    # Ready only once it answers over TCP, the way the services connect (not during the image's first init).
    check = services["postgres"]["healthcheck"]["test"]
    assert "pg_isready" in check and "127.0.0.1" in check
    assert "ports" not in services["postgres"]  # only the services reach it, on the compose network


def test_the_dockerfile_runs_as_a_non_root_user_with_a_healthcheck() -> None:
    dockerfile = (REPO / "deploy" / "Dockerfile").read_text()
    assert dockerfile.count("FROM ") >= 2, "multi-stage"
    assert "USER battery-ct" in dockerfile
    assert "HEALTHCHECK" in dockerfile
    assert "python:3.11" in dockerfile
    # Exactly the runtime dependencies of pyproject.toml, which pins them.
    assert 'project["dependencies"]' in dockerfile and "pip install -r /tmp/requirements.txt" in dockerfile


def test_the_image_gets_every_installed_package() -> None:
    """Each package pyproject.toml installs is copied into the image and let through its dockerignore."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    packages = [pattern.rstrip("*") for pattern in project["tool"]["setuptools"]["packages"]["find"]["include"]]
    dockerfile = (REPO / "deploy" / "Dockerfile").read_text()
    ignore = (REPO / "deploy" / "Dockerfile.dockerignore").read_text().splitlines()
    assert {"local_stack", "examples"} <= set(packages)
    for package in packages:
        assert f"COPY {package} ./{package}" in dockerfile, package
        assert f"!{package}/" in ignore, package
    # The broker's files are package data of local_stack, so a non-editable install has them too.
    assert "broker/*" in project["tool"]["setuptools"]["package-data"]["local_stack"]


def test_nothing_but_the_api_is_published_beyond_localhost(resolved: dict[str, Any]) -> None:
    published = {name: published_host_ips(service) for name, service in resolved["services"].items()}
    assert published["api"] == ["0.0.0.0"]
    assert {name for name, ips in published.items() if ips} >= {"api", "kafka", "minio", "prometheus", "grafana"}
    for name, ips in published.items():
        if name != "api":
            assert set(ips) <= {"127.0.0.1"}, f"{name} publishes {ips}"


# The battery-ct services, their Kafka user (what local_stack.kafka_acls.service_acls allows) and their
# MinIO account (the policy deploy/minio/init.sh gives it; None: the service reads and writes no object).
SERVICE_IDENTITIES: dict[str, tuple[str, str | None]] = {
    "inference": ("inference", "INFERENCE"),
    "retrain": ("retrain", "RETRAIN"),
    "review": ("review", None),
    "api": ("facade", "FACADE"),
    "model-bootstrap": ("retrain", "RETRAIN"),  # imports and promotes a first model: the registry's writer
    "simulator": ("uploader", "UPLOADER"),
}


def test_each_service_has_its_own_kafka_user_and_s3_account(resolved: dict[str, Any]) -> None:
    from local_stack.kafka_acls import SERVICE_USERS

    services = resolved["services"]
    kafka_env = services["kafka"]["environment"]
    minio_init = services["minio-init"]["environment"]
    root = services["minio"]["environment"]["MINIO_ROOT_USER"]
    for name, (kafka_user, s3_account) in SERVICE_IDENTITIES.items():
        env = services[name]["environment"]
        assert env["BATTERY_CT_KAFKA_SECURITY_PROTOCOL"] == "SASL_PLAINTEXT", name
        assert env["BATTERY_CT_KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512", name
        assert env["BATTERY_CT_KAFKA_USERNAME"] == kafka_user, name
        # The password the broker creates the user with, and the account minio-init creates.
        assert env["BATTERY_CT_KAFKA_PASSWORD"] == kafka_env[f"KAFKA_{kafka_user.upper()}_PASSWORD"], name
        if s3_account is None:
            assert "BATTERY_CT_S3_ACCESS_KEY" not in env and "BATTERY_CT_S3_SECRET_KEY" not in env, name
            continue
        assert env["BATTERY_CT_S3_ACCESS_KEY"] == minio_init[f"S3_{s3_account}_ACCESS_KEY"] != root, name
        assert env["BATTERY_CT_S3_SECRET_KEY"] == minio_init[f"S3_{s3_account}_SECRET_KEY"], name
    long_running = ("inference", "retrain", "review", "api")
    assert len({services[n]["environment"]["BATTERY_CT_KAFKA_USERNAME"] for n in long_running}) == 4
    with_s3 = [n for n in long_running if SERVICE_IDENTITIES[n][1] is not None]
    assert len({services[n]["environment"]["BATTERY_CT_S3_ACCESS_KEY"] for n in with_s3}) == len(with_s3) == 3
    users = {user for user, _ in SERVICE_IDENTITIES.values()} | {"minio"}
    assert users <= set(SERVICE_USERS)
    passwords = [kafka_env[f"KAFKA_{user.upper()}_PASSWORD"] for user in (*SERVICE_USERS, "admin", "controller")]
    assert len(set(passwords)) == len(passwords)
    # Only the setup job is the Kafka admin; it creates the ACLs of every user.
    topics_init = services["topics-init"]
    assert topics_init["environment"]["BATTERY_CT_KAFKA_USERNAME"] == "admin"
    assert "create_acls(connection_config(settings), service_acls(settings))" in " ".join(topics_init["command"])
    admins = [n for n, s in services.items() if s.get("environment", {}).get("BATTERY_CT_KAFKA_USERNAME") == "admin"]
    assert admins == ["topics-init"]


def test_kafka_authenticates_every_client_and_denies_what_no_acl_allows() -> None:
    from local_stack.kafka_acls import SERVICE_USERS

    script = KAFKA_START.read_text()
    protocols = re.search(r"^listener\.security\.protocol\.map=(.*)$", script, re.M)
    assert protocols is not None
    assert {pair.split(":")[1] for pair in protocols.group(1).split(",")} == {"SASL_PLAINTEXT"}
    assert "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer" in script
    assert "allow.everyone.if.no.acl.found=false" in script
    assert "super.users=User:admin;User:controller" in script
    assert "auto.create.topics.enable=false" in script
    services = re.search(r'^SERVICES="(.*)"$', script, re.M)
    assert services is not None and services.group(1).split() == list(SERVICE_USERS)
    assert "--add-scram" in script and "--ignore-formatted" in script


def _run_minio_init(tmp_path: Path, *, secret: str = "-secret") -> tuple[dict[str, dict[str, Any]], list[str]]:
    """deploy/minio/init.sh with a stand-in `mc` that records its calls: the policies and the calls."""
    stub = tmp_path / "bin" / "mc"
    stub.parent.mkdir(parents=True)
    stub.write_text(f'#!/bin/sh\necho "$*" >> {tmp_path}/mc.log\n')
    stub.chmod(0o755)
    env = {
        "PATH": f"{stub.parent}:/usr/bin:/bin",
        "POLICY_DIR": str(tmp_path),
        "MINIO_ROOT_USER": "root",
        "MINIO_ROOT_PASSWORD": "root-password",
        **{f"BATTERY_CT_BUCKET_{b.upper()}": b for b in ("scans", "models", "datasets", "heatmaps")},
    }
    for account in ("UPLOADER", "INFERENCE", "RETRAIN", "FACADE"):
        env[f"S3_{account}_ACCESS_KEY"] = account.lower()
        env[f"S3_{account}_SECRET_KEY"] = secret if secret.startswith("change-me") else f"{account.lower()}{secret}"
    result = subprocess.run(["sh", str(MINIO_INIT)], env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    policies = {
        p.stem.removeprefix("battery-ct-"): json.loads(p.read_text()) for p in tmp_path.glob("battery-ct-*.json")
    }
    return policies, (tmp_path / "mc.log").read_text().splitlines()


def _grants(policy: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (action, resource.removeprefix("arn:aws:s3:::"))
        for statement in policy["Statement"]
        if statement["Effect"] == "Allow"
        for action in statement["Action"]
        for resource in statement["Resource"]
    }


def test_minio_init_gives_each_service_only_its_own_rights(tmp_path: Path) -> None:
    policies, calls = _run_minio_init(tmp_path)
    assert set(policies) == {"uploader", "inference", "retrain", "facade"}
    grants = {name: _grants(policy) for name, policy in policies.items()}

    def who(action: str, resource: str) -> set[str]:
        return {name for name, granted in grants.items() if (action, resource) in granted}

    assert who("s3:PutObject", "scans/*") == {"uploader"}
    assert who("s3:GetObject", "scans/*") == {"inference", "retrain", "facade"}
    assert who("s3:PutObject", "models/*") == {"retrain"}
    assert who("s3:DeleteObject", "models/*") == {"retrain"}
    assert who("s3:GetObject", "models/*") == {"inference", "retrain", "facade"}
    assert who("s3:PutObject", "datasets/*") == {"retrain"}
    assert who("s3:PutObject", "heatmaps/*") == {"inference", "facade"}
    assert who("s3:GetObject", "heatmaps/*") == set()
    every_action = {action for granted in grants.values() for action, _ in granted}
    assert every_action == {"s3:GetBucketLocation", "s3:ListBucket", "s3:GetObject", "s3:PutObject", "s3:DeleteObject"}
    # Each account exists with its own policy attached; the built-in readwrite policy is gone.
    for account in ("uploader", "inference", "retrain", "facade"):
        assert f"admin user add local {account} {account}-secret" in calls
        assert f"admin policy attach local battery-ct-{account} --user {account}" in calls
    assert not any("readwrite" in call for call in calls)


@pytest.mark.integration
@pytest.mark.slow
def test_the_compose_kafka_entrypoint_starts_a_secure_broker_on_the_local_jars(tmp_path: Path) -> None:
    """deploy/kafka/start.sh, with the image's two tools replaced by the local broker's jars: the users it
    formats with and the ACLs topics-init creates let the retrain user publish a model update and
    refuse the facade, on the internal and the external listener, and again after a restart."""
    import os
    import signal

    from local_stack.free_ports import is_listening, pick_port
    from local_stack.jars import ensure_kafka_libs
    from local_stack.probes import kafka_answers

    libs = ensure_kafka_libs(Settings().kafka_libs_dir)
    home = tmp_path / "kafka"
    (home / "bin").mkdir(parents=True)
    log4j = REPO / "local_stack" / "broker" / "log4j.properties"
    java = f"java -Xmx512m -XX:TieredStopAtLevel=1 -Dlog4j.configuration=file:{log4j} -Dkafka.logs.dir={home}/logs"
    for tool, main in (("kafka-storage.sh", "kafka.tools.StorageTool"), ("kafka-server-start.sh", "kafka.Kafka")):
        (home / "bin" / tool).write_text(f'#!/bin/sh\nexec {java} -cp "{libs}/*" {main} "$@"\n')
        (home / "bin" / tool).chmod(0o755)
    internal = pick_port(None)
    controller = pick_port(None, avoid={internal})
    external = pick_port(None, avoid={internal, controller})
    passwords = {user: f"{user}-secret" for user in ("admin", "controller", "uploader", "minio", "inference")}
    passwords |= {"retrain": "retrain-secret", "facade": "facade-secret", "review": "review-secret"}
    env = {
        "PATH": os.environ["PATH"],
        "CLUSTER_ID": "MkU3OEVBNTcwNTJENDM2Qk",
        **{f"KAFKA_{user.upper()}_PASSWORD": password for user, password in passwords.items()},
        "KAFKA_HOME": str(home),
        "KAFKA_CONFIG_DIR": str(home / "config"),
        "KAFKA_DATA_DIR": str(home / "data"),
        "KAFKA_HOST": "127.0.0.1",
        "KAFKA_BIND_HOST": "127.0.0.1",
        "KAFKA_INTERNAL_PORT": str(internal),
        "KAFKA_CONTROLLER_PORT": str(controller),
        "KAFKA_EXTERNAL_LISTENER_PORT": str(external),
        "KAFKA_EXTERNAL_ADVERTISED": f"127.0.0.1:{external}",
    }
    admin_connection = {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "admin",
        "sasl_plain_password": passwords["admin"],
    }

    def start() -> subprocess.Popen[bytes]:
        with (home / "start.log").open("ab") as log:
            process = subprocess.Popen(
                ["bash", str(KAFKA_START)], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + 120
        while not kafka_answers(f"127.0.0.1:{internal}", **admin_connection):
            assert process.poll() is None, (home / "start.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the broker did not answer within 120 s"
            time.sleep(0.5)
        return process

    def stop(process: subprocess.Popen[bytes]) -> None:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=60)

    process = start()
    try:
        asyncio.run(_check_rights(Settings(), (internal, external), passwords, setup=True))
        stop(process)
        process = start()  # formatted already: the users and ACLs are kept
        asyncio.run(_check_rights(Settings(), (internal, external), passwords, setup=False))
    finally:
        if process.poll() is None:
            stop(process)
    assert not is_listening("127.0.0.1", internal)


async def _check_rights(base: Settings, ports: tuple[int, int], passwords: dict[str, str], *, setup: bool) -> None:
    from aiokafka.errors import TopicAuthorizationFailedError

    from local_stack.kafka_acls import create_acls, service_acls
    from local_stack.kafka_security import client_settings
    from runtime.kafka import connection_config, make_producer
    from runtime.topics import ensure_topics, standard_topics

    for port in ports:
        settings = base.model_copy(update={"kafka_bootstrap": f"127.0.0.1:{port}"})
        if setup and port == ports[0]:  # what topics-init runs, on the internal listener
            admin = client_settings(settings, "admin", passwords["admin"])
            await ensure_topics(admin, standard_topics(settings))
            await create_acls(connection_config(admin), service_acls(settings))
        retrain = make_producer(client_settings(settings, "retrain", passwords["retrain"]))
        await retrain.start()
        try:
            await retrain.send_and_wait(settings.topic_model_updates, b"promoted", key=b"model")
        finally:
            await retrain.stop()
        facade = make_producer(client_settings(settings, "facade", passwords["facade"]))
        await facade.start()
        try:
            await facade.send_and_wait(settings.topic_accepted, b"accepted", key=b"scan")
            with pytest.raises(TopicAuthorizationFailedError):
                await facade.send_and_wait(settings.topic_model_updates, b"forged", key=b"model")
        finally:
            await facade.stop()


def test_the_placeholders_of_the_example_env_are_refused(tmp_path: Path) -> None:
    """Kafka and minio-init refuse to start with a change-me value of .env.example, before anything else."""
    env = {line.split("=", 1)[0]: line.split("=", 1)[1] for line in ENV_EXAMPLE.read_text().splitlines() if "=" in line}
    kafka_env = {
        "PATH": "/usr/bin:/bin",
        "CLUSTER_ID": env["KAFKA_CLUSTER_ID"],
        "KAFKA_HOME": str(tmp_path / "no-kafka-here"),
        "KAFKA_CONFIG_DIR": str(tmp_path / "config"),
        **{name: value for name, value in env.items() if name.startswith("KAFKA_") and name.endswith("_PASSWORD")},
    }
    kafka = subprocess.run(["bash", str(KAFKA_START)], env=kafka_env, capture_output=True, text=True, timeout=30)
    assert kafka.returncode == 2
    assert "placeholder" in kafka.stderr and not (tmp_path / "config").exists()

    with pytest.raises(AssertionError, match="placeholder"):
        _run_minio_init(tmp_path / "minio", secret="change-me-s3-secret")
