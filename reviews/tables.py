"""The review database's tables (SQLAlchemy 2 ORM). Alembic's migrations in `reviews/migrations`
create exactly these; `tests/reviews/test_database.py` checks that the two agree."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class UtcDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on both backends: SQLite keeps no zone, so it is put back on reading."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: the review database stores aware UTC times only")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# Large integers on PostgreSQL, and SQLite's rowid on SQLite (BIGINT is not an alias of it there).
Serial = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UtcDateTime, dict[str, Any]: JSON, list[Any]: JSON}


class Cell(Base):
    """One scanned cell: its latest verdict, why it is in the review queue, and its latest decision."""

    __tablename__ = "cells"

    scan_id: Mapped[str] = mapped_column(String(256), primary_key=True)
    recipe: Mapped[str | None] = mapped_column(String(64))
    image_url: Mapped[str] = mapped_column(String(2048))
    heatmap_url: Mapped[str | None] = mapped_column(String(2048))
    model_version: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), doc="judged | unusable (the verdict's own status)")
    is_anomaly: Mapped[bool] = mapped_column(Boolean)
    anomaly_score: Mapped[float] = mapped_column(Float)
    threshold: Mapped[float] = mapped_column(Float)
    reconstruction_error: Mapped[float] = mapped_column(Float)
    conforms: Mapped[bool | None] = mapped_column(Boolean)
    findings: Mapped[list[Any] | None] = mapped_column(JSON)
    measurements: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    reasons: Mapped[list[Any] | None] = mapped_column(JSON, doc="failed checks, unusable reason codes")
    judged_at: Mapped[datetime] = mapped_column(UtcDateTime)
    verdicts: Mapped[int] = mapped_column(Integer, default=1)
    queue_reason: Mapped[str | None] = mapped_column(
        String(24), doc="anomaly | out_of_tolerance | unusable | audit; null: passed and not sampled"
    )
    in_queue: Mapped[bool] = mapped_column(Boolean, doc="queued and not decided yet")
    # No foreign key: cells and decisions would reference each other (decisions.scan_id is the one kept).
    decision_id: Mapped[int | None] = mapped_column(Serial)
    decided_label: Mapped[str | None] = mapped_column(String(16))

    __table_args__ = (
        Index("ix_cells_queue", "in_queue", "judged_at"),
        Index("ix_cells_recipe_judged", "recipe", "judged_at"),
        Index("ix_cells_judged", "judged_at"),
    )


class VerdictRecord(Base):
    """Every verdict as read from the verdicts topic, once per Kafka offset: a cell's history."""

    __tablename__ = "verdicts"

    id: Mapped[int] = mapped_column(Serial, primary_key=True, autoincrement=True)
    scan_id: Mapped[str] = mapped_column(String(256), index=True)
    topic: Mapped[str] = mapped_column(String(249))
    partition: Mapped[int] = mapped_column(Integer)
    offset: Mapped[int] = mapped_column(BigInteger)
    model_version: Mapped[str] = mapped_column(String(64))
    is_anomaly: Mapped[bool] = mapped_column(Boolean)
    anomaly_score: Mapped[float] = mapped_column(Float)
    threshold: Mapped[float] = mapped_column(Float)
    judged_at: Mapped[datetime] = mapped_column(UtcDateTime)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)

    __table_args__ = (UniqueConstraint("topic", "partition", "offset", name="uq_verdicts_source"),)


class RejectedVerdict(Base):
    """A record of the verdicts topic that is not a verdict this reader understands: kept with its
    reason (the review consumer's dead letters), in the transaction that moves past it."""

    __tablename__ = "rejected_verdicts"

    id: Mapped[int] = mapped_column(Serial, primary_key=True, autoincrement=True)
    topic: Mapped[str] = mapped_column(String(249))
    partition: Mapped[int] = mapped_column(Integer)
    offset: Mapped[int] = mapped_column(BigInteger)
    reason: Mapped[str] = mapped_column(Text)
    value: Mapped[bytes | None] = mapped_column(LargeBinary, doc="the first 64 KiB of the record")
    rejected_at: Mapped[datetime] = mapped_column(UtcDateTime)

    __table_args__ = (UniqueConstraint("topic", "partition", "offset", name="uq_rejected_source"),)


class ConsumerOffset(Base):
    """The next offset to read per partition, written in the transaction that stores what was read:
    the database, not Kafka, is the record of progress, so a crash can neither lose nor repeat."""

    __tablename__ = "consumer_offsets"

    group_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    topic: Mapped[str] = mapped_column(String(249), primary_key=True)
    partition: Mapped[int] = mapped_column(Integer, primary_key=True)
    next_offset: Mapped[int] = mapped_column(BigInteger)


class Decision(Base):
    """What a person decided about a cell, when and why; an override names the decision it replaces."""

    __tablename__ = "decisions"

    id: Mapped[int] = mapped_column(Serial, primary_key=True, autoincrement=True)
    scan_id: Mapped[str] = mapped_column(ForeignKey("cells.scan_id"), index=True)
    username: Mapped[str] = mapped_column(ForeignKey("users.username"))
    label: Mapped[str] = mapped_column(String(16), doc="defect | normal | unusable")
    kind: Mapped[str | None] = mapped_column(String(32))
    comment: Mapped[str | None] = mapped_column(Text)
    decided_at: Mapped[datetime] = mapped_column(UtcDateTime)
    overrides_id: Mapped[int | None] = mapped_column(ForeignKey("decisions.id"))
    model_version: Mapped[str] = mapped_column(String(64), doc="the model whose verdict was reviewed")


class OutboxMessage(Base):
    """A message to publish, written in the decision's transaction; `relay` publishes it once."""

    __tablename__ = "outbox"

    seq: Mapped[int] = mapped_column(Serial, primary_key=True, autoincrement=True)
    decision_id: Mapped[int] = mapped_column(ForeignKey("decisions.id"))
    topic: Mapped[str] = mapped_column(String(249))
    key: Mapped[bytes | None] = mapped_column(LargeBinary)
    value: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    published_at: Mapped[datetime | None] = mapped_column(UtcDateTime, index=True)


class Installation(Base):
    """This database's identity (one row): the outbox's progress in Kafka names it, so a new
    database is never taken for one whose decisions were already published."""

    __tablename__ = "installation"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class User(Base):
    __tablename__ = "users"

    username: Mapped[str] = mapped_column(String(64), primary_key=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16), doc="operator | engineer")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)


class LoginSession(Base):
    """A signed-in browser: only the token's hash is stored, so a read of the database is no login."""

    __tablename__ = "login_sessions"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    username: Mapped[str] = mapped_column(ForeignKey("users.username"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)
