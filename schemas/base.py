"""What every Kafka message shares: a schema version that readers check, and JSON (de)serialisation."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, ValidationError

SCHEMA_MAJOR = 1
# 1.1: verdicts gain recipe, pixel_mm, measurements, conforms and conformance; scan events recipe
# and pixel_mm (all optional: every 1.0 message stays valid).
# 1.2: a scan can be a whole cell (a CT volume): scan events gain kind and slice_mm; a cell's verdict
# is a Verdict of kind "cell" with its slices, z-profile and 3-D findings (a 1.1 reader reads it as a
# verdict and ignores the rest).
SCHEMA_VERSION = f"{SCHEMA_MAJOR}.2"

# Scan ids end up in object keys, metric labels and log lines: printable (letters of any script, as in
# the keys MinIO notifies), bounded, no path tricks.
ScanId = Annotated[
    str,
    StringConstraints(min_length=1, max_length=256, pattern=r"^\w[\w.:@+=,/ -]*$"),
    AfterValidator(lambda v: _reject_traversal(v)),
]


def _reject_traversal(value: str) -> str:
    if ".." in value.split("/") or "//" in value:
        raise ValueError("scan_id must not contain '..' segments or empty path segments")
    return value


def utc_now() -> datetime:
    return datetime.now(UTC)


def summarise_errors(errors: Iterable[Mapping[str, Any]], *, whole: str = "message", most: int = 5) -> str:
    """One line naming where each of the first `most` validation errors is and what it says, e.g.
    `image_url: Field required; schema_version: unknown schema major version 2 (...)`; `whole`
    names the top level. Takes `ValidationError.errors()` and FastAPI's request errors alike."""
    parts = []
    for error in list(errors)[:most]:
        loc = error.get("loc", ())
        where = ".".join(str(p) for p in loc) if isinstance(loc, tuple | list) else str(loc)
        parts.append(f"{where or whole}: {error.get('msg', 'invalid')}")
    return "; ".join(parts) or f"invalid {whole}"


def summarise(exc: ValidationError, *, whole: str = "message") -> str:
    """`summarise_errors` of a pydantic `ValidationError`."""
    return summarise_errors(exc.errors(), whole=whole)


def _check_major(value: str) -> str:
    major, _, minor = value.partition(".")
    if not major.isdigit() or (minor and not minor.isdigit()):
        raise ValueError(f"schema_version {value!r} is not of the form MAJOR.MINOR")
    if int(major) != SCHEMA_MAJOR:
        raise ValueError(f"unknown schema major version {major} (this reader understands {SCHEMA_MAJOR}.x)")
    return value


SchemaVersion = Annotated[str, StringConstraints(max_length=16), AfterValidator(_check_major)]


class Message(BaseModel):
    """Base of every Kafka message: immutable, strict about unknown majors, tolerant of new fields."""

    model_config = ConfigDict(frozen=True, extra="ignore", str_max_length=1_000_000)

    schema_version: SchemaVersion = Field(SCHEMA_VERSION, description="MAJOR.MINOR; readers refuse other majors")

    def to_json(self) -> bytes:
        return self.model_dump_json().encode()

    @classmethod
    def from_json(cls, data: bytes | str) -> Self:
        """Parse and validate; raises pydantic.ValidationError with the reason on bad input."""
        return cls.model_validate_json(data)
