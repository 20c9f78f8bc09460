"""What the review pages' forms and query strings may hold, as pydantic models: the boundary
between a browser's strings and the review database's requests."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from urllib.parse import urlencode

from pydantic import BaseModel, ConfigDict, Field, field_validator

from reviews.decisions import DecisionLabel, DecisionRequest
from reviews.queue import QueueFilter, QueueReason


class _Form(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", str_strip_whitespace=True)

    @field_validator("*", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: Any) -> Any:
        # An empty text box or the "any" choice of a drop-down means the field was not given.
        return None if value == "" else value


class LoginForm(_Form):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)
    next: str | None = Field(None, max_length=2000)


class QueueQuery(_Form):
    """The queue page's query string: dates are whole days (UTC), `until` included."""

    recipe: str | None = Field(None, max_length=64)
    reason: QueueReason | None = None
    model_version: str | None = Field(None, max_length=64)
    since: date | None = None
    until: date | None = None
    page: int = Field(1, ge=1, le=10_000)

    def to_filter(self, *, page_size: int | None = None) -> QueueFilter:
        return QueueFilter(
            recipe=self.recipe,
            reason=self.reason,
            model_version=self.model_version,
            since=datetime.combine(self.since, time(), UTC) if self.since else None,
            until=datetime.combine(self.until + timedelta(days=1), time(), UTC) if self.until else None,
            page=self.page,
            **({"page_size": page_size} if page_size else {}),
        )

    def query_string(self, **changes: Any) -> str:
        """This query (with `changes`) as a query string, the unset fields left out."""
        values = self.model_dump(mode="json") | changes
        return urlencode({k: v for k, v in values.items() if v is not None and not (k == "page" and v == 1)})


class DecisionForm(_Form):
    label: DecisionLabel
    kind: str | None = Field(None, max_length=32)
    comment: str | None = Field(None, max_length=2000)
    replaces: int | None = Field(None, ge=1)
    queue: str | None = Field(None, max_length=1000, description="the queue's query string, to find the next cell")

    def to_request(self) -> DecisionRequest:
        # The kind drop-down is sent with every button; it belongs to a defect only.
        kind = self.kind if self.label == "defect" else None
        return DecisionRequest(label=self.label, kind=kind, comment=self.comment, replaces=self.replaces)


class RollbackForm(_Form):
    confirmed: bool = False
