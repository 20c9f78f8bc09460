"""The training dataset's manifest: every accepted scan, keyed by content hash, with its scan ids.

A scan's bytes are copied once into the datasets bucket under their SHA-256; the manifest says what
each copy is (normal or defect), which scan ids delivered it and which Kafka message added it.
Replays and duplicates therefore never grow the dataset, while a batch that is redone after a crash
(the same message again) still counts its scans as new.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.accepted import Label
from schemas.base import utc_now

MANIFEST_KEY = "manifest.json"
HOLDOUT_EVERY = 7  # one normal scan in seven is never trained on: the gate's trusted validation set

Change = Literal["new", "relabelled", "duplicate"]


def object_key(sha256: str) -> str:
    """Where the copy of a scan lives in the datasets bucket (content-addressed: written once)."""
    return f"objects/{sha256[:2]}/{sha256}"


def is_holdout(sha256: str) -> bool:
    return int(sha256[:8], 16) % HOLDOUT_EVERY == 0


class NewScan(BaseModel):
    """An accepted scan whose bytes are safely in the datasets bucket."""

    model_config = ConfigDict(frozen=True)

    scan_id: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    label: Label
    source: str = Field(description="topic/partition/offset of the message that accepted it")
    job_id: str | None = None


class ManifestEntry(BaseModel):
    model_config = ConfigDict(frozen=True)

    sha256: str
    label: Label
    object_key: str
    scan_ids: tuple[str, ...]
    source: str
    holdout: bool = False
    added_in: str | None = Field(None, description="The model version whose batch added or relabelled it")
    quarantined: bool = Field(False, description="A normal scan of a rejected batch: never trained on again")
    accepted_at: datetime = Field(default_factory=utc_now)


class DatasetManifest(BaseModel):
    model_config = ConfigDict(frozen=True)

    entries: dict[str, ManifestEntry] = Field(default_factory=dict)
    updated_at: datetime = Field(default_factory=utc_now)

    def size_by_label(self) -> dict[str, int]:
        """Scans in the dataset by label (quarantined ones are not part of it)."""
        sizes = {"normal": 0, "defect": 0}
        for entry in self.entries.values():
            if not entry.quarantined:
                sizes[entry.label] += 1
        return sizes

    def to_json(self) -> bytes:
        return self.model_dump_json(indent=1).encode()

    @classmethod
    def from_json(cls, data: bytes) -> DatasetManifest:
        return cls.model_validate_json(data)


def add_scan(manifest: DatasetManifest, scan: NewScan) -> tuple[DatasetManifest, Change]:
    """The manifest with `scan` in it, and what that changed.

    - the same content already there from the same message: "new" (a batch redone after a crash);
    - the same content with the same label: "duplicate" (its scan id is remembered, nothing grows);
    - the same content with another label: "relabelled" (the latest decision wins);
    - otherwise "new".
    """
    entries = dict(manifest.entries)
    existing = entries.get(scan.sha256)
    change: Change
    if existing is None:
        entry = ManifestEntry(
            sha256=scan.sha256,
            label=scan.label,
            object_key=object_key(scan.sha256),
            scan_ids=(scan.scan_id,),
            source=scan.source,
            holdout=scan.label == "normal" and is_holdout(scan.sha256),
        )
        change = "new"
    else:
        scan_ids = existing.scan_ids if scan.scan_id in existing.scan_ids else (*existing.scan_ids, scan.scan_id)
        if existing.source == scan.source:
            change = "new"
            entry = existing.model_copy(update={"scan_ids": scan_ids, "label": scan.label})
        elif existing.label != scan.label:
            change = "relabelled"
            entry = existing.model_copy(
                update={
                    "scan_ids": scan_ids,
                    "label": scan.label,
                    "source": scan.source,
                    "quarantined": False,
                    "holdout": scan.label == "normal" and is_holdout(scan.sha256),
                }
            )
        else:
            change = "duplicate"
            entry = existing.model_copy(update={"scan_ids": scan_ids})
    entries[scan.sha256] = entry
    return DatasetManifest(entries=entries), change


def settle_batch(manifest: DatasetManifest, changed: set[str], version: str, *, rejected: bool) -> DatasetManifest:
    """Record which version took the batch's scans; a rejected batch's normal scans are quarantined."""
    entries = dict(manifest.entries)
    for sha in changed:
        entry = entries[sha]
        entries[sha] = entry.model_copy(
            update={"added_in": version, "quarantined": rejected and entry.label == "normal"}
        )
    return DatasetManifest(entries=entries)
