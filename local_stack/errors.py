"""Errors of the local infrastructure: what went wrong and what the user can do about it."""

from __future__ import annotations


class InfraError(RuntimeError):
    """The local Kafka broker or S3 endpoint could not be started, reached or stopped."""


class MissingToolError(InfraError):
    """A program battery-ct infra needs (java, mvn) is not installed."""
