"""local_stack.postgres: the throwaway server starts, serves SQLAlchemy, keeps databases apart and really stops.

The session's server (tests.postgres_fixture) serves the first tests; the last one starts and stops a
server of its own, so that stopping it harms no other test.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from local_stack.errors import MissingToolError
from local_stack.free_ports import is_listening
from local_stack.postgres import PostgresError, PostgresServer, create_database, find_bin_dir, start_postgres
from local_stack.processes import is_alive
from tests.postgres_fixture import database_name


def _rows(url: str, statements: list[str], query: str) -> list[tuple[object, ...]]:
    engine = sa.create_engine(url)
    try:
        with engine.begin() as connection:
            for statement in statements:
                connection.execute(sa.text(statement))
        with engine.connect() as connection:
            return [tuple(row) for row in connection.execute(sa.text(query))]
    finally:
        engine.dispose()


def test_the_server_serves_sqlalchemy_over_tcp_as_the_battery_ct_superuser(postgres_url: str) -> None:
    assert postgres_url.startswith("postgresql+psycopg://battery_ct@127.0.0.1:")
    rows = _rows(
        postgres_url,
        [
            "CREATE TABLE cell (scan_id text PRIMARY KEY, score double precision)",
            "INSERT INTO cell VALUES ('é-1', 0.5)",
        ],
        "SELECT scan_id, score, current_user, pg_client_encoding(), inet_server_addr()::text FROM cell",
    )
    assert rows == [("é-1", 0.5, "battery_ct", "UTF8", "127.0.0.1/32")]
    settings = _rows(postgres_url, [], "SELECT current_setting('is_superuser'), current_setting('server_encoding')")
    assert settings == [("on", "UTF8")]


def test_two_databases_are_independent(postgres_server: PostgresServer, postgres_url: str) -> None:
    other = create_database(postgres_server, database_name("other"))
    assert other != postgres_url and other.startswith(postgres_server.database_url(""))
    _rows(postgres_url, ["CREATE TABLE verdict (id int)", "INSERT INTO verdict VALUES (1)"], "SELECT 1")
    tables = "SELECT count(*) FROM information_schema.tables WHERE table_name = 'verdict'"
    assert _rows(other, [], tables) == [(0,)]
    _rows(other, ["CREATE TABLE verdict (id int)"], "SELECT 1")  # the same name again: no conflict
    assert _rows(postgres_url, [], "SELECT id FROM verdict") == [(1,)]
    assert _rows(other, [], "SELECT count(*) FROM verdict") == [(0,)]


def test_database_names_are_checked(postgres_server: PostgresServer) -> None:
    with pytest.raises(ValueError, match="database name"):
        create_database(postgres_server, "x; DROP DATABASE postgres")
    with pytest.raises(PostgresError, match="already exists"):
        create_database(postgres_server, "postgres")


def test_the_newest_installed_version_is_found(tmp_path: Path) -> None:
    for version in ("9", "13", "15"):
        (tmp_path / version / "bin").mkdir(parents=True)
        (tmp_path / version / "bin" / "initdb").touch()
    (tmp_path / "17" / "bin").mkdir(parents=True)  # a client-only package: no server tools
    assert find_bin_dir(tmp_path) == tmp_path / "15" / "bin"
    with pytest.raises(MissingToolError, match="apt-get install postgresql"):
        find_bin_dir(tmp_path / "none")
    assert (find_bin_dir() / "postgres").is_file()  # and a real one here (CI installs postgresql)


def test_stop_really_stops_the_server_even_with_a_session_open(tmp_path: Path) -> None:
    server = start_postgres(tmp_path / "own", database="first")
    assert server.url.endswith("/first") and is_listening("127.0.0.1", server.port)
    engine = sa.create_engine(server.url)
    connection = engine.connect()  # left open: a fast shutdown ends it
    assert connection.execute(sa.text("SELECT 1")).scalar() == 1
    server.stop()
    with pytest.raises(sa.exc.OperationalError):
        connection.execute(sa.text("SELECT 1"))
    connection.close()
    engine.dispose()
    assert not is_alive(server.pid, server.pid_ticks)
    assert not is_listening("127.0.0.1", server.port)
    assert not (server.data_dir / "postmaster.pid").exists()
    if server.owned_dir is not None:  # run as root: the server's own directory is gone too
        assert not server.owned_dir.exists()
    server.stop()  # idempotent
    with pytest.raises(PostgresError, match="holds a cluster already"):
        start_postgres(tmp_path / "own")
