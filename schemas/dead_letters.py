"""Messages of the dead-letter topic: a poison message, kept with the reason it was refused."""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Literal

from pydantic import Field

from schemas.base import Message, utc_now


class DeadLetter(Message):
    source_topic: str
    partition: int = Field(ge=0)
    offset: int = Field(ge=0)
    key: str | None = None
    payload: str = Field(description="The original message value, as text or base64")
    payload_encoding: Literal["utf-8", "base64"] = "utf-8"
    error_class: str = Field(max_length=200)
    error_message: str = Field(max_length=4000)
    consumer: str = Field(max_length=200)
    failed_at: datetime = Field(default_factory=utc_now)

    @staticmethod
    def encode_payload(value: bytes) -> tuple[str, Literal["utf-8", "base64"]]:
        try:
            return value.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            return base64.b64encode(value).decode("ascii"), "base64"

    def original_payload(self) -> bytes:
        if self.payload_encoding == "base64":
            return base64.b64decode(self.payload)
        return self.payload.encode("utf-8")
