"""What `battery-ct infra up` started, kept as JSON in the state directory for `down` and `status`."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from local_stack.processes import is_alive

STATE_FILE = "state.json"


class ServiceRecord(BaseModel):
    """One piece of the infrastructure: where it answers and, when we started it, its process."""

    model_config = ConfigDict(frozen=True)

    name: str
    endpoint: str
    pid: int | None = None
    start_ticks: int | None = None
    log: Path | None = None

    @property
    def managed(self) -> bool:
        """Started by battery-ct infra (else an endpoint that was already there)."""
        return self.pid is not None

    def running(self) -> bool:
        return self.pid is not None and is_alive(self.pid, self.start_ticks)


class InfraState(BaseModel):
    model_config = ConfigDict(frozen=True)

    kafka: ServiceRecord
    s3: ServiceRecord

    def services(self) -> tuple[ServiceRecord, ServiceRecord]:
        return (self.kafka, self.s3)


def load_state(state_dir: Path) -> InfraState | None:
    path = state_dir / STATE_FILE
    if not path.exists():
        return None
    return InfraState.model_validate_json(path.read_text())


def save_state(state_dir: Path, state: InfraState) -> None:
    state_dir.mkdir(parents=True, exist_ok=True)
    tmp = state_dir / f".{STATE_FILE}.{os.getpid()}"
    tmp.write_text(state.model_dump_json(indent=2))
    tmp.replace(state_dir / STATE_FILE)  # atomic: a concurrent `status` never reads half a file


def clear_state(state_dir: Path) -> None:
    (state_dir / STATE_FILE).unlink(missing_ok=True)
