"""A pytest plugin: one throwaway PostgreSQL server per test session and a fresh database per test.

The review database is tested against SQLite and PostgreSQL; these fixtures give the PostgreSQL side a
real server from Debian's binaries (local_stack.postgres) without docker. Registered by tests/conftest.py
(`pytest_plugins`), or with `-p tests.postgres_fixture`.

`postgres_server` (session): the running server, stopped at the end of the session.
`postgres_url` (function): the SQLAlchemy URL (postgresql+psycopg://) of a new empty database of its own,
dropped after the test, so tests never see each other's rows or schema.

Where PostgreSQL is not installed the fixtures fail with what to install (CI installs it): a test that
needs the database never skips.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import pytest

from local_stack.postgres import PostgresServer, create_database, drop_database, start_postgres


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    with start_postgres(tmp_path_factory.mktemp("postgres")) as server:
        yield server


@pytest.fixture
def postgres_url(postgres_server: PostgresServer, request: pytest.FixtureRequest) -> Iterator[str]:
    name = database_name(request.node.name)
    yield create_database(postgres_server, name)
    drop_database(postgres_server, name)


def database_name(test_name: str) -> str:
    """A unique database name that still says which test it belongs to (in the server's log, in psql)."""
    readable = re.sub(r"[^a-z0-9_]+", "_", test_name.lower()).strip("_")[:40]
    return f"t_{readable}_{uuid.uuid4().hex[:12]}"
