"""Pydantic models of every message, HTTP body and setting that crosses a process boundary."""
