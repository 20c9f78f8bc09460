"""Pydantic models of every message, HTTP body and setting that crosses a process boundary."""

__battery_ct__ = True  # runtime.installation: this package is battery-ct's
