"""A throwaway PostgreSQL server from Debian's binaries, for the tests and benchmarks of the review database.

The review database runs on SQLite by default and on PostgreSQL in the compose stack; its migrations and
queries are tested against both, so the tests need a real server without docker. `start_postgres(directory)`
creates a cluster there (`initdb`: UTF8, trust authentication, which the server only offers on loopback,
superuser `battery_ct`), starts it with `pg_ctl` on a free port of 127.0.0.1 (its unix socket in the same
directory), waits until it accepts connections and creates a first database. `create_database` adds a
fresh one (a clean database per test); `PostgresServer.stop` ends the server, killing it if it must.

PostgreSQL refuses to run as root: as root (CI), initdb and pg_ctl run as the `postgres` system user that
Debian's package creates, in a directory that user owns (`runuser -u postgres --`).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from local_stack.errors import InfraError, MissingToolError
from local_stack.free_ports import pick_port
from local_stack.processes import is_alive, start_ticks, tail

SUPERUSER = "battery_ct"
SYSTEM_USER = "postgres"  # who runs the server when we are root: the owner Debian's package creates
DEBIAN_BIN_ROOT = Path("/usr/lib/postgresql")
# A unix socket path (directory + "/.s.PGSQL.<port>") must fit in sockaddr_un's 108 bytes.
_MAX_SOCKET_DIR = 90
_DATABASE_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


class PostgresError(InfraError):
    """The throwaway PostgreSQL server could not be created, started, reached or stopped."""


def find_bin_dir(root: Path = DEBIAN_BIN_ROOT) -> Path:
    """`/usr/lib/postgresql/<N>/bin` of the newest major version N installed (Debian keeps them side by side)."""
    versions = sorted(
        (int(entry.name), entry / "bin")
        for entry in (root.iterdir() if root.is_dir() else [])
        if entry.name.isdigit() and (entry / "bin" / "initdb").is_file()
    )
    if not versions:
        raise MissingToolError(f"no PostgreSQL server under {root}/<version>/bin: apt-get install postgresql")
    return versions[-1][1]


@dataclass(frozen=True)
class PostgresServer:
    """A running server: connect with `url` (SQLAlchemy, psycopg 3), end it with `stop()` (or a `with` block).

    `run_as` is the system user the server runs as when it is not the current one (root's case), and
    `owned_dir` a directory `start_postgres` made outside the caller's one, which `stop()` removes.
    """

    url: str
    port: int
    data_dir: Path
    log_file: Path
    pid: int
    pid_ticks: int | None
    bin_dir: Path
    run_as: str | None = None
    owned_dir: Path | None = None

    def database_url(self, name: str) -> str:
        """The SQLAlchemy URL of the database `name` on this server."""
        return f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{self.port}/{name}"

    def stop(self, *, timeout_s: float = 30.0) -> None:
        """Fast shutdown (open sessions are ended), then an immediate one, then SIGKILL; idempotent.

        pg_ctl alone is not trusted: a server that does not finish in time, or a pg_ctl that fails, must
        still not outlive the tests that started it.
        """
        if is_alive(self.pid, self.pid_ticks):
            pg_ctl = str(self.bin_dir / "pg_ctl")
            command = [pg_ctl, "stop", "-D", str(self.data_dir), "-m", "fast", "-w", "-t", str(int(timeout_s))]
            _run(self.run_as, command, check=False, timeout_s=timeout_s + 10)
            for sig, wait_s in ((signal.SIGQUIT, 10.0), (signal.SIGKILL, 10.0)):
                if not is_alive(self.pid, self.pid_ticks):
                    break
                os.kill(self.pid, sig)
                _wait_until(lambda: not is_alive(self.pid, self.pid_ticks), wait_s)
        if is_alive(self.pid, self.pid_ticks):
            raise PostgresError(f"the PostgreSQL server (pid {self.pid}) did not stop; see {self.log_file}")
        if self.owned_dir is not None:
            shutil.rmtree(self.owned_dir, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()


def start_postgres(
    directory: Path,
    *,
    database: str = "battery_ct",
    port: int | None = None,
    durable: bool = False,
    timeout_s: float = 60.0,
    bin_dir: Path | None = None,
) -> PostgresServer:
    """Create a cluster under `directory` (which must not hold one yet), start it and create `database`.

    `port`: the preferred port (a free one when it is taken or None). `durable=False` turns off fsync,
    synchronous commits and full-page writes: a throwaway server has nothing to keep after a crash, and a
    test does not wait on the disk; benchmarks that measure commits pass True.
    """
    _check_name(database)
    bin_dir = bin_dir or find_bin_dir()
    run_as = SYSTEM_USER if os.geteuid() == 0 else None
    root, owned = _server_root(directory, run_as)
    data_dir, log_file = root / "data", root / "postgres.log"
    server: PostgresServer | None = None
    try:
        _initdb(bin_dir, data_dir, run_as)
        for attempt in range(3):  # the free port may be taken by someone else between the choice and the bind
            chosen = pick_port(port if attempt == 0 else None)
            pid = _pg_ctl_start(bin_dir, data_dir, log_file, chosen, run_as, durable, timeout_s)
            if pid is not None:
                server = PostgresServer(
                    url=f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{chosen}/{database}",
                    port=chosen,
                    data_dir=data_dir,
                    log_file=log_file,
                    pid=pid,
                    pid_ticks=start_ticks(pid),
                    bin_dir=bin_dir,
                    run_as=run_as,
                    owned_dir=owned,
                )
                break
        if server is None:
            raise PostgresError(
                f"PostgreSQL could not bind a port on 127.0.0.1; last lines of {log_file}:\n{tail(log_file)}"
            )
        _wait_for_connections(server, timeout_s)
        create_database(server, database)
    except BaseException:
        with contextlib.suppress(PostgresError):
            if server is not None:
                server.stop()
        if owned is not None:
            shutil.rmtree(owned, ignore_errors=True)
        raise
    return server


def create_database(server: PostgresServer, name: str) -> str:
    """Create the empty database `name` (lower-case letters, digits, underscores) and return its URL."""
    import psycopg
    from psycopg import sql

    _check_name(name)
    try:
        with psycopg.connect(_libpq_url(server, "postgres"), autocommit=True, connect_timeout=10) as connection:
            connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    except psycopg.Error as exc:
        raise PostgresError(f"creating the database {name} on 127.0.0.1:{server.port} failed: {exc}") from exc
    return server.database_url(name)


def drop_database(server: PostgresServer, name: str) -> None:
    """Drop the database `name`, ending the sessions still open on it (a test's engine that was not disposed)."""
    import psycopg
    from psycopg import sql

    _check_name(name)
    try:
        with psycopg.connect(_libpq_url(server, "postgres"), autocommit=True, connect_timeout=10) as connection:
            connection.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
    except psycopg.Error as exc:
        raise PostgresError(f"dropping the database {name} on 127.0.0.1:{server.port} failed: {exc}") from exc


def _check_name(name: str) -> None:
    if not _DATABASE_NAME.fullmatch(name):
        raise ValueError(f"database name {name!r}: 1 to 63 of a-z 0-9 _, not starting with a digit")


def _libpq_url(server: PostgresServer, database: str) -> str:
    return f"postgresql://{SUPERUSER}@127.0.0.1:{server.port}/{database}"


def _server_root(directory: Path, run_as: str | None) -> tuple[Path, Path | None]:
    """Where the cluster, its socket and its log live, and the directory to remove at stop (if not the caller's).

    The caller's directory when the server's user can write there and the socket path fits; otherwise
    (root with a 0700 pytest or CI temporary directory above it, or a long path) a new one under the
    system's temporary directory.
    """
    directory.mkdir(parents=True, exist_ok=True)
    if (directory / "data").exists() or (directory / "server").is_symlink():
        raise PostgresError(f"{directory} holds a cluster already: start_postgres creates a new one, give it another")
    if run_as is not None:
        _chown(directory, run_as)
    if len(str(directory)) <= _MAX_SOCKET_DIR and _writable_by(directory, run_as):
        return directory, None
    owned = Path(tempfile.mkdtemp(prefix="battery-ct-postgres-"))
    if run_as is not None:
        _chown(owned, run_as)
    if not _writable_by(owned, run_as):
        shutil.rmtree(owned, ignore_errors=True)
        raise PostgresError(
            f"the user {run_as} can reach neither {directory} nor {owned.parent}: "
            "set TMPDIR to a directory it can write to"
        )
    # Whoever cleans up `directory` after a killed session (.ci/run) finds the server through this link.
    (directory / "server").symlink_to(owned, target_is_directory=True)
    return owned, owned


def _chown(path: Path, user: str) -> None:
    try:
        account = pwd.getpwnam(user)
    except KeyError:
        raise MissingToolError(
            f"no system user {user} to run PostgreSQL as (it refuses root): apt-get install postgresql"
        ) from None
    os.chown(path, account.pw_uid, account.pw_gid)


def _writable_by(path: Path, run_as: str | None) -> bool:
    if run_as is None:
        return os.access(path, os.W_OK | os.X_OK)
    result = subprocess.run(
        [*_as_user(run_as), "test", "-w", str(path), "-a", "-x", str(path)], env=_tool_env(), cwd="/", timeout=30
    )
    return result.returncode == 0


def _tool_env() -> dict[str, str]:
    """Our environment without the caller's libpq variables (PGDATA, PGPORT, PGHOST, ...): they must not redirect
    initdb or pg_ctl to another cluster."""
    return {name: value for name, value in os.environ.items() if not name.startswith("PG")}


def _as_user(run_as: str | None) -> list[str]:
    if run_as is None:
        return []
    runuser = shutil.which("runuser") or "/usr/sbin/runuser"
    if not Path(runuser).is_file():
        raise MissingToolError("runuser not found (util-linux): needed to run PostgreSQL as a non-root user")
    return [runuser, "-u", run_as, "--"]


def _run(
    run_as: str | None, command: Sequence[str], *, check: bool = True, timeout_s: float = 60.0
) -> subprocess.CompletedProcess[str]:
    """Run a PostgreSQL tool as `run_as` (None: ourselves) from /, a directory every user may enter."""
    result = subprocess.run(
        [*_as_user(run_as), *command], env=_tool_env(), cwd="/", capture_output=True, text=True, timeout=timeout_s
    )
    if check and result.returncode != 0:
        raise PostgresError(
            f"{Path(command[0]).name} failed (status {result.returncode}):\n{result.stdout}{result.stderr}"
        )
    return result


def _initdb(bin_dir: Path, data_dir: Path, run_as: str | None) -> None:
    _run(
        run_as,
        [
            str(bin_dir / "initdb"),
            "-D",
            str(data_dir),
            "-U",
            SUPERUSER,
            "--encoding=UTF8",
            "--locale=C",  # present everywhere, unlike C.UTF-8 or en_US.UTF-8
            "--auth=trust",  # the server listens on 127.0.0.1 and its socket only: trust is loopback only
            "--no-sync",
        ],
    )
    if not (data_dir / "PG_VERSION").is_file():
        raise PostgresError(f"initdb did not create a cluster in {data_dir}")


def _pg_ctl_start(
    bin_dir: Path, data_dir: Path, log_file: Path, port: int, run_as: str | None, durable: bool, timeout_s: float
) -> int | None:
    """Start the server on `port` and return its PID; None when that port was taken in the meantime."""
    # pg_ctl hands the options to the shell that starts the server: the socket directory is quoted.
    options = [f"-c listen_addresses=127.0.0.1 -p {port} -k {shlex.quote(str(data_dir.parent))}"]
    if not durable:
        options.append("-c fsync=off -c synchronous_commit=off -c full_page_writes=off")
    offset = log_file.stat().st_size if log_file.exists() else 0
    pg_ctl = str(bin_dir / "pg_ctl")
    wait = ["-w", "-t", str(int(timeout_s))]
    result = _run(
        run_as,
        [pg_ctl, "start", "-D", str(data_dir), "-l", str(log_file), *wait, "-o", " ".join(options)],
        check=False,
        timeout_s=timeout_s + 10,
    )
    if result.returncode == 0:
        return _postmaster_pid(data_dir)
    # A server that was still starting when pg_ctl gave up must not be left behind (a no-op when none runs).
    _run(run_as, [pg_ctl, "stop", "-D", str(data_dir), "-m", "immediate", *wait], check=False, timeout_s=timeout_s + 10)
    log = _read_from(log_file, offset)
    if "could not bind" in log or "Address already in use" in log:
        return None
    raise PostgresError(
        f"pg_ctl start failed (status {result.returncode}): {result.stdout}{result.stderr}\n"
        f"last lines of {log_file}:\n{tail(log_file)}"
    )


def _postmaster_pid(data_dir: Path) -> int:
    """The server's PID, the first line of postmaster.pid (pg_ctl daemonises it: it is not our child)."""
    try:
        return int((data_dir / "postmaster.pid").read_text().splitlines()[0])
    except (OSError, IndexError, ValueError) as exc:
        raise PostgresError(f"pg_ctl started a server but {data_dir}/postmaster.pid is unreadable: {exc}") from exc


def _wait_for_connections(server: PostgresServer, timeout_s: float) -> None:
    """pg_ctl -w waited for the postmaster; this proves a client gets a session over TCP, before a deadline."""
    import psycopg

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with psycopg.connect(_libpq_url(server, "postgres"), connect_timeout=5) as connection:
                connection.execute("SELECT 1")
            return
        except psycopg.OperationalError as exc:
            if not is_alive(server.pid, server.pid_ticks) or time.monotonic() > deadline:
                state = "exited" if not is_alive(server.pid, server.pid_ticks) else f"refused for {timeout_s:.0f} s"
                raise PostgresError(
                    f"PostgreSQL on 127.0.0.1:{server.port} {state}: {exc}\n"
                    f"last lines of {server.log_file}:\n{tail(server.log_file)}"
                ) from exc
            time.sleep(0.1)


def _wait_until(done: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while not done():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _read_from(path: Path, offset: int) -> str:
    try:
        with path.open("rb") as log:
            log.seek(offset)
            return log.read().decode(errors="replace")
    except OSError:
        return ""


__all__ = ["PostgresError", "PostgresServer", "create_database", "drop_database", "find_bin_dir", "start_postgres"]
