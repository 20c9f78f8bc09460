"""local_stack.processes: `stop` ends the process `spawn` started (by PID and start time), and only that one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from local_stack.processes import is_alive, spawn, start_ticks, stop


def test_stop_ends_the_process_it_started_and_only_that_one(tmp_path: Path) -> None:
    process = spawn(
        [sys.executable, "-c", "import time; print('up', flush=True); time.sleep(600)"], log_file=tmp_path / "p.log"
    )
    ticks = start_ticks(process.pid)
    assert is_alive(process.pid, ticks)
    assert not is_alive(process.pid, (ticks or 0) + 1)  # same PID, other start time: someone else's process
    assert stop(process.pid, (ticks or 0) + 1) is False  # ... and is never signalled
    assert process.poll() is None

    assert stop(process.pid, ticks) is True
    assert process.poll() is not None or not is_alive(process.pid, ticks)
    assert stop(process.pid, ticks) is False


def test_stop_kills_a_process_that_ignores_sigterm(tmp_path: Path) -> None:
    code = "import signal as s, time; s.signal(s.SIGTERM, s.SIG_IGN); print('ready', flush=True); time.sleep(99)"
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    assert process.stdout.readline() == "ready\n"  # the handler is installed
    ticks = start_ticks(process.pid)
    assert stop(process.pid, ticks, timeout_s=0.5) is True
    assert not is_alive(process.pid, ticks)  # reaped by `stop` (it is our child here)
    with pytest.raises(ProcessLookupError):
        os.kill(process.pid, 0)
    process.wait(timeout=10)
    process.stdout.close()
