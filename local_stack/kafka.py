"""The local Kafka broker: one KRaft node (broker + controller) from the Maven-fetched jars.

Its data and logs live under <state_dir>/kafka/; the storage is formatted on the first start and
kept across `down`/`up`, so topics and committed offsets survive a restart.
"""

from __future__ import annotations

import base64
import subprocess
import time
import uuid
from pathlib import Path
from string import Template

from local_stack.errors import InfraError
from local_stack.jars import BROKER_FILES, Progress, require_java
from local_stack.probes import kafka_answers
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


def render_config(state_dir: Path, *, broker_port: int, controller_port: int) -> Path:
    data, logs, config = kafka_paths(state_dir)
    data.mkdir(parents=True, exist_ok=True)
    logs.mkdir(parents=True, exist_ok=True)
    text = Template(TEMPLATE.read_text()).substitute(
        broker_port=broker_port,
        controller_port=controller_port,
        advertised_host="127.0.0.1",
        data_dir=data,
    )
    config.write_text(text)
    _log4j_config(config).write_bytes(LOG4J.read_bytes())
    return config


def new_cluster_id() -> str:
    """16 random bytes, URL-safe base64 without padding (what `kafka-storage random-uuid` prints).

    Like Kafka's own Uuid.randomUuid, never one that starts with '-': the storage tool would read it as an option.
    """
    while (cluster_id := base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()).startswith("-"):
        pass
    return cluster_id


def _format_storage(java: str, libs: Path, state_dir: Path, config: Path) -> None:
    data, logs, _ = kafka_paths(state_dir)
    if (data / "meta.properties").exists():
        return
    cluster_id = new_cluster_id()
    command = _java_command(
        java, libs, logs, config, "kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(config)
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
) -> tuple[ServiceRecord, subprocess.Popen[bytes]]:
    """Start the broker and return once it answers a metadata request (or raise, with its log)."""
    java = require_java()
    config = render_config(state_dir, broker_port=broker_port, controller_port=controller_port)
    _format_storage(java, libs, state_dir, config)
    _, logs, _ = kafka_paths(state_dir)
    out = logs / "kafka.out"
    process = spawn(_java_command(java, libs, logs, config, "kafka.Kafka", str(config)), log_file=out)
    bootstrap = f"127.0.0.1:{broker_port}"
    record = ServiceRecord(
        name="kafka", endpoint=bootstrap, pid=process.pid, start_ticks=start_ticks(process.pid), log=logs / "server.log"
    )
    progress(f"kafka: started (pid {process.pid}), waiting for {bootstrap} to answer ...")
    deadline = time.monotonic() + timeout_s
    while not kafka_answers(bootstrap, timeout_s=2.0):
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
    return record, process
