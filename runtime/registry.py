"""The metrics registry of one battery-ct process: its own metrics, plus the standard process and
platform collectors (CPU seconds, resident memory, open file descriptors, Python version) that
prometheus_client's global registry would carry, since the services never use the global one."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector


def service_registry() -> CollectorRegistry:
    """A fresh registry with the process and platform collectors registered (one per process)."""
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    return registry
