"""The review station's data: verdicts materialised per cell, operators' decisions with their audit
trail and outbox, and the people who decide. Sync SQLAlchemy (SQLite or PostgreSQL); the async
services call it in worker threads."""

__battery_ct__ = True  # runtime.installation: this package is battery-ct's
