"""The local Kafka broker: one KRaft node (broker + controller) from the Maven-fetched jars.

Its data and logs live under <state_dir>/kafka/; the storage is formatted on the first start and
kept across `down`/`up`, so topics and committed offsets survive a restart.

PLAINTEXT by default; with `security=KafkaSecurity(...)` (and `acls=`) the broker authenticates every
client with SASL/SCRAM-SHA-512 and allows only what the ACLs say (local_stack.kafka_security and
local_stack.kafka_acls). A state directory keeps the mode and users it was formatted with.
"""

from __future__ import annotations

import base64
import subprocess
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from string import Template

from local_stack.errors import InfraError
from local_stack.jars import BROKER_FILES, Progress, require_java
from local_stack.kafka_acls import Acl, create_acls
from local_stack.kafka_security import KafkaSecurity
from local_stack.probes import kafka_answers, run_async
from local_stack.processes import spawn, start_ticks, stop, tail
from local_stack.state import ServiceRecord

TEMPLATE = BROKER_FILES / "server.properties.template"
LOG4J = BROKER_FILES / "log4j.properties"
HEAP = ("-Xms128m", "-Xmx768m")
# The client-level JIT only: on a busy 2-core machine the broker answered after 9-12 s instead of 19-20 s, and
# a local broker's load is far below what it can serve without the C2 compiler.
JIT = ("-XX:TieredStopAtLevel=1",)


def kafka_paths(state_dir: Path) -> tuple[Path, Path, Path]:
    """The broker's data directory, log directory and configuration file."""
    root = state_dir / "kafka"
    return root / "data", root / "logs", root / "server.properties"


def _log4j_config(config: Path) -> Path:
    """The logging configuration next to the broker's (a file of ours: the package's may sit in an archive)."""
    return config.with_name(LOG4J.name)


def _java_command(java: str, libs: Path, logs: Path, config: Path, main: str, *args: str) -> list[str]:
    return [
        java,
        *HEAP,
        *JIT,
        "-XX:+UseG1GC",
        "-Djava.awt.headless=true",
        f"-Dlog4j.configuration=file:{_log4j_config(config)}",
        f"-Dkafka.logs.dir={logs}",
        "-cp",
        f"{libs}/*",
        main,
        *args,
    ]


def plaintext_listeners(*, broker_port: int, controller_port: int, host: str = "127.0.0.1") -> str:
    return "\n".join(
        [
            f"listeners=PLAINTEXT://{host}:{broker_port},CONTROLLER://{host}:{controller_port}",
            f"advertised.listeners=PLAINTEXT://{host}:{broker_port}",
            "inter.broker.listener.name=PLAINTEXT",
            "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        ]
    )


def render_config(
    state_dir: Path, *, broker_port: int, controller_port: int, security: KafkaSecurity | None = None
) -> Path:
    data, logs, config = kafka_paths(state_dir)
    data.mkdir(parents=True, exist_ok=True)
    logs.mkdir(parents=True, exist_ok=True)
    if security is None:
        listeners = plaintext_listeners(broker_port=broker_port, controller_port=controller_port)
    else:
        listeners = security.listener_properties(broker_port=broker_port, controller_port=controller_port)
    text = Template(TEMPLATE.read_text()).substitute(
        broker_port=broker_port, controller_port=controller_port, listeners=listeners, data_dir=data
    )
    config.write_text(text)
    config.chmod(0o600)  # in secure mode it holds the super users' passwords
    _log4j_config(config).write_bytes(LOG4J.read_bytes())
    return config


def new_cluster_id() -> str:
    """16 random bytes, URL-safe base64 without padding (what `kafka-storage random-uuid` prints).

    Like Kafka's own Uuid.randomUuid, never one that starts with '-': the storage tool would read it as an option.
    """
    while (cluster_id := base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()).startswith("-"):
        pass
    return cluster_id


def _format_storage(
    java: str, libs: Path, state_dir: Path, config: Path, security: KafkaSecurity | None = None
) -> None:
    """Format the storage on the first start; in secure mode its first metadata holds the SCRAM users."""
    data, logs, _ = kafka_paths(state_dir)
    if (data / "meta.properties").exists():
        return
    cluster_id = new_cluster_id()
    scram = security.format_args() if security is not None else []
    command = _java_command(
        java, libs, logs, config, "kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(config), *scram
    )
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    if result.returncode != 0:
        raise InfraError(f"formatting the Kafka storage in {data} failed:\n{result.stdout}\n{result.stderr}")


def start_kafka(
    state_dir: Path,
    libs: Path,
    *,
    broker_port: int,
    controller_port: int,
    timeout_s: float = 120.0,
    progress: Progress = lambda _: None,
    security: KafkaSecurity | None = None,
    acls: Sequence[Acl] = (),
) -> tuple[ServiceRecord, subprocess.Popen[bytes]]:
    """Start the broker and return once it answers a metadata request (or raise, with its log).

    With `security`: SASL/SCRAM and the StandardAuthorizer, the users created at the first format,
    and `acls` created (as the admin user) before this returns. The same `security` must be passed
    on every start with the same state directory: its users are in the formatted storage.
    """
    if acls and security is None:
        raise InfraError("ACLs need a secure broker: pass security=KafkaSecurity(...)")
    java = require_java()
    config = render_config(state_dir, broker_port=broker_port, controller_port=controller_port, security=security)
    _format_storage(java, libs, state_dir, config, security)
    _, logs, _ = kafka_paths(state_dir)
    out = logs / "kafka.out"
    process = spawn(_java_command(java, libs, logs, config, "kafka.Kafka", str(config)), log_file=out)
    bootstrap = f"127.0.0.1:{broker_port}"
    record = ServiceRecord(
        name="kafka", endpoint=bootstrap, pid=process.pid, start_ticks=start_ticks(process.pid), log=logs / "server.log"
    )
    progress(f"kafka: started (pid {process.pid}), waiting for {bootstrap} to answer ...")
    deadline = time.monotonic() + timeout_s
    sasl = security.admin_sasl() if security is not None else {}
    while not kafka_answers(bootstrap, timeout_s=2.0, **sasl):
        if process.poll() is not None:
            raise InfraError(
                f"the Kafka broker exited with status {process.returncode} during start; "
                f"last lines of {out}:\n{tail(out)}\n{tail(logs / 'server.log')}"
            )
        if time.monotonic() > deadline:
            stop(process.pid, record.start_ticks)
            process.poll()
            raise InfraError(f"the Kafka broker did not answer within {timeout_s:.0f} s; see {logs / 'server.log'}")
        time.sleep(0.25)
    if security is not None and acls:
        try:
            created = run_async(create_acls({"bootstrap_servers": bootstrap, **sasl}, acls))
        except BaseException:
            stop(process.pid, record.start_ticks)
            process.poll()
            raise
        progress(f"kafka: {created} ACLs in place")
    return record, process
