"""`up`, `down` and `status` of the local infrastructure, serialised by a lock in the state directory."""

from __future__ import annotations

import contextlib
import fcntl
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from local_stack.env import infra_env
from local_stack.errors import InfraError
from local_stack.free_ports import pick_port, split_host_port
from local_stack.jars import Progress, ensure_kafka_libs, require_java
from local_stack.kafka import start_kafka
from local_stack.probes import kafka_answers, s3_answers
from local_stack.processes import stop
from local_stack.s3 import start_moto
from local_stack.state import InfraState, ServiceRecord, clear_state, load_state, save_state
from schemas.settings import Settings

DEFAULT_CONTROLLER_PORT = 9093


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass
class Infra:
    """The running infrastructure: where it answers, and the processes this call started."""

    state: InfraState
    settings: Settings
    started: list[str] = field(default_factory=list)
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list, repr=False)

    def env(self) -> dict[str, str]:
        return infra_env(self.state, self.settings)

    def apply(self, settings: Settings) -> Settings:
        """`settings` pointed at this infrastructure."""
        endpoints = {"kafka_bootstrap": self.state.kafka.endpoint, "s3_endpoint": self.state.s3.endpoint}
        return settings.model_copy(update=endpoints)


@contextlib.contextmanager
def _locked(state_dir: Path) -> Iterator[None]:
    state_dir.mkdir(parents=True, exist_ok=True)
    with (state_dir / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def up(
    settings: Settings,
    *,
    prefer_default_ports: bool = True,
    reuse_configured: bool = True,
    progress: Progress = _stderr,
) -> Infra:
    """Start the Kafka broker and S3 endpoint unless they already run; return when both answer.

    Reuses, in this order: what an earlier `up` with the same state directory started; an endpoint
    the settings name explicitly (BATTERY_CT_KAFKA_BOOTSTRAP / BATTERY_CT_S3_ENDPOINT) when it
    answers. Otherwise starts its own, on the configured ports when they are free, else on free ones.
    """
    state_dir = settings.state_dir
    explicit = settings.model_fields_set if reuse_configured else set()
    processes: list[subprocess.Popen[bytes]] = []
    started: list[str] = []
    with _locked(state_dir):
        previous = load_state(state_dir)
        try:
            kafka = _existing(previous.kafka if previous else None, kafka_answers, progress)
            if kafka is None and "kafka_bootstrap" in explicit and kafka_answers(settings.kafka_bootstrap):
                kafka = ServiceRecord(name="kafka", endpoint=settings.kafka_bootstrap)
                progress(f"kafka: using the broker at {kafka.endpoint}")
            s3 = _existing(previous.s3 if previous else None, s3_answers, progress)
            if s3 is None and "s3_endpoint" in explicit and s3_answers(settings.s3_endpoint, secure=settings.s3_secure):
                s3 = ServiceRecord(name="s3", endpoint=settings.s3_endpoint)
                progress(f"s3: using the endpoint at {s3.endpoint}")

            libs = None
            if kafka is None:
                # Java and the jars first: a missing tool is reported before anything was started.
                require_java()
                libs = ensure_kafka_libs(settings.kafka_libs_dir, progress=progress)
            if s3 is None:
                _, preferred = split_host_port(settings.s3_endpoint, 9000)
                port = pick_port(preferred if prefer_default_ports else None)
                s3, process = start_moto(state_dir, port=port, progress=progress)
                processes.append(process)
                started.append("s3")
                _save_partial(state_dir, s3=s3, kafka=kafka)
            if kafka is None and libs is not None:
                _, preferred = split_host_port(settings.kafka_bootstrap, 9092)
                broker = pick_port(preferred if prefer_default_ports else None)
                controller = pick_port(DEFAULT_CONTROLLER_PORT if prefer_default_ports else None, avoid={broker})
                kafka, process = start_kafka(
                    state_dir, libs, broker_port=broker, controller_port=controller, progress=progress
                )
                processes.append(process)
                started.append("kafka")
        except BaseException:
            # Leave nothing half-started behind: stop what this call started, keep what was there.
            for process in processes:
                process.terminate()
                process.wait(timeout=60)
            if previous is None or not any(r.running() for r in previous.services()):
                clear_state(state_dir)
            raise
        state = InfraState(kafka=kafka, s3=s3)
        save_state(state_dir, state)
    return Infra(state=state, settings=settings, started=started, processes=processes)


def _existing(record: ServiceRecord | None, answers: Callable[[str], bool], progress: Progress) -> ServiceRecord | None:
    """An earlier `up`'s process that still runs (and answers), else None."""
    if record is None or not record.managed or not record.running():
        return None
    if not answers(record.endpoint):
        raise InfraError(
            f"{record.name} (pid {record.pid}) runs but does not answer at {record.endpoint}; "
            f"see {record.log}, or run `battery-ct infra down` and try again"
        )
    progress(f"{record.name}: already running at {record.endpoint} (pid {record.pid})")
    return record


def _save_partial(state_dir: Path, *, s3: ServiceRecord, kafka: ServiceRecord | None) -> None:
    # Recorded at once so that a crash while the broker starts does not orphan the S3 server.
    save_state(state_dir, InfraState(kafka=kafka or ServiceRecord(name="kafka", endpoint=""), s3=s3))


def down(settings: Settings, *, purge: bool = False, progress: Progress = _stderr) -> list[ServiceRecord]:
    """Stop the processes `up` started (by PID, waiting for them); returns those it stopped."""
    state_dir = settings.state_dir
    stopped: list[ServiceRecord] = []
    with _locked(state_dir):
        state = load_state(state_dir)
        for record in state.services() if state else ():
            if record.pid is None:
                continue
            progress(f"{record.name}: stopping pid {record.pid} ...")
            if stop(record.pid, record.start_ticks):
                stopped.append(record)
            else:
                progress(f"{record.name}: pid {record.pid} was not running")
        clear_state(state_dir)
        if purge:
            for sub in ("kafka", "s3"):
                shutil.rmtree(state_dir / sub, ignore_errors=True)
            progress(f"removed the broker's data and logs under {state_dir}")
    return stopped


@dataclass(frozen=True)
class ServiceStatus:
    record: ServiceRecord
    running: bool
    answering: bool

    def describe(self) -> str:
        where = self.record.endpoint
        if not self.record.managed:
            return f"{self.record.name}: {'answering' if self.answering else 'NOT answering'} at {where} (not ours)"
        if not self.running:
            return f"{self.record.name}: stopped (was pid {self.record.pid} at {where})"
        health = "answering" if self.answering else "running but NOT answering"
        return f"{self.record.name}: {health} at {where} (pid {self.record.pid}, log {self.record.log})"


def status(settings: Settings) -> tuple[InfraState | None, list[ServiceStatus]]:
    state = load_state(settings.state_dir)
    if state is None:
        return None, []
    results = [
        ServiceStatus(state.kafka, state.kafka.running(), kafka_answers(state.kafka.endpoint)),
        ServiceStatus(state.s3, state.s3.running(), s3_answers(state.s3.endpoint)),
    ]
    return state, results
