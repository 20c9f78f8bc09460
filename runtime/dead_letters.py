"""Dead letters: a poison message kept with its original payload and the reason it was refused."""

from __future__ import annotations

import re
from dataclasses import dataclass

from runtime.records import SourceRecord
from schemas.dead_letters import DeadLetter

_CAMEL = re.compile(r"(?<!^)(?=[A-Z])")


@dataclass(frozen=True)
class Poison:
    """A message (or one scan of it) that can never be processed: it goes to the dead-letter topic."""

    source: SourceRecord
    error: BaseException
    scan_id: str | None = None

    @property
    def key(self) -> bytes | None:
        """The dead letter's key: the message's own, else the scan it was about."""
        return self.source.key or (self.scan_id.encode() if self.scan_id else None)


def error_code(exc: BaseException) -> str:
    """A short, stable reason for metrics: the error's `code` when it has one, else its class in snake case."""
    code = getattr(exc, "code", None)
    if isinstance(code, str) and code:
        return code
    return _CAMEL.sub("_", type(exc).__name__).lower()


def dead_letter(record: SourceRecord, exc: BaseException, *, consumer: str) -> DeadLetter:
    payload, encoding = DeadLetter.encode_payload(record.value or b"")
    key = None if record.key is None else record.key.decode("utf-8", errors="replace")
    return DeadLetter(
        source_topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        key=key,
        payload=payload,
        payload_encoding=encoding,
        error_class=f"{type(exc).__module__}.{type(exc).__qualname__}"[:200],
        error_message=(str(exc) or type(exc).__name__)[:4000],
        consumer=consumer,
    )
