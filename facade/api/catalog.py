"""The checkpoint registry as the facade sees it: versions as CheckpointInfo, and rollback.
Blocking (S3 through the registry's blob store): callers run it in a worker thread."""

from __future__ import annotations

from pathlib import Path

from model_core.registry import Registry
from schemas.api import CheckpointInfo
from schemas.model_updates import ModelUpdate


class RegistryCatalog:
    def __init__(self, registry: Registry) -> None:
        self._registry = registry

    def current_version(self) -> str | None:
        return self._registry.current_version()

    def fetch(self, version: str, dest: Path) -> Path:
        return self._registry.fetch(version, dest)

    def checkpoints(self) -> list[CheckpointInfo]:
        return [
            CheckpointInfo(
                version=record.version,
                status=record.status,
                current=record.current,
                threshold=record.metadata.threshold,
                created_at=record.metadata.created_at,
                parent=record.metadata.parent,
                validation_error=record.metadata.validation_error,
                anomaly_error=record.metadata.anomaly_error,
            )
            for record in self._registry.list_versions()
        ]

    def rollback(self, version: str) -> ModelUpdate:
        """Serve `version` again (its files are verified first); returns the update to broadcast
        (the same one `battery-ct checkpoints rollback` sends)."""
        from producers.model_updates import rolled_back_update

        reason = "rollback through the HTTP facade"
        previous = self._registry.rollback(version, reason=reason)
        return rolled_back_update(self._registry.metadata(version), previous, reason=f"{reason} from {previous}")
