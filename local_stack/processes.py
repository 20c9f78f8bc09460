"""Background processes identified by PID and start time, so that `down` never signals a stranger.

A PID alone can be reused by the system after our process died; the start time (in clock ticks
since boot, from /proc) together with the PID names one process for the lifetime of the machine.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path


def start_ticks(pid: int) -> int | None:
    """The start time of `pid` in clock ticks since boot; None where /proc is not available."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its closing one.
    fields = stat.rpartition(")")[2].split()
    return int(fields[19])


def is_alive(pid: int, ticks: int | None) -> bool:
    """True while the process `pid` that started at `ticks` runs (zombies count as gone)."""
    try:
        reaped, _ = os.waitpid(pid, os.WNOHANG)  # reaps it if it is our own child that has exited
        if reaped == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False  # someone else's process now holds this PID
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return True  # no /proc: trust the signal check
    if state in ("Z", "X"):
        return False
    return ticks is None or start_ticks(pid) == ticks


def spawn(command: Sequence[str], *, log_file: Path, env: Mapping[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start `command` in its own session (Ctrl-C of the caller does not reach it), output to `log_file`."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as log:
        return subprocess.Popen(
            list(command),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            start_new_session=True,
        )


def stop(pid: int, ticks: int | None, *, timeout_s: float = 60.0) -> bool:
    """SIGTERM the process, wait for it to exit, SIGKILL it after `timeout_s`. False if it was not running."""
    if not is_alive(pid, ticks):
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    # Not our child in general (started by an earlier `infra up`), so there is nothing to wait on but the PID.
    while is_alive(pid, ticks):
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 10.0
        time.sleep(0.1)
    return True


def tail(path: Path, lines: int = 20) -> str:
    """The last lines of a log file, for error messages."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])
