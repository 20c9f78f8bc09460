"""The demo's service subprocesses (`battery-ct serve inference|retrain|api`): start, await ready, stop.

Each service gets the demo's settings as BATTERY_CT_* variables, its own metrics or API port, its
own working directory and a log file. Ready means its /readyz answers 200 (the consumers report
ready once subscribed with a producer open; the facade once Kafka, S3 and a model answer), so
the demo never guesses with sleeps. `stop` sends SIGTERM and waits: the services finish the
batch in flight and commit before they exit.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from schemas.settings import ENV_PREFIX, Settings

READY_POLL_S = 0.25  # /readyz has no push form: polling it is the signal


class ServiceError(RuntimeError):
    """A service exited or did not become ready; the message names its log."""


def settings_env(settings: Settings, base: dict[str, str], **overrides: Any) -> dict[str, str]:
    """`base` plus every setting (and `overrides`) as BATTERY_CT_* variables."""
    env = dict(base)
    for name, value in {**settings.model_dump(), **overrides}.items():
        if value is None:
            continue
        if hasattr(value, "get_secret_value"):
            value = value.get_secret_value()
        elif isinstance(value, tuple | list):
            value = json.dumps(list(value))
        elif isinstance(value, bool):
            value = "true" if value else "false"
        env[f"{ENV_PREFIX}{name.upper()}"] = str(value)
    return env


@dataclass
class Service:
    """One `battery-ct serve NAME` subprocess; `ready_url` is its /readyz."""

    name: str
    ready_url: str
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = field(default=None, repr=False)

    def start(self, env: dict[str, str], args: list[str]) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "facade.cli", "serve", self.name, *args],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            # Its own process group: the demo decides when it stops (Ctrl-C reaches only the demo,
            # which then sends SIGTERM, so every service ends the documented way).
            start_new_session=True,
        )

    def wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            if self.process is None or self.process.poll() is not None:
                raise ServiceError(f"{self.name} exited before it was ready; see {self.log_path}")
            if _answers_ok(self.ready_url):
                return
            if time.monotonic() > deadline:
                raise ServiceError(f"{self.name} was not ready after {timeout_s:.0f} s; see {self.log_path}")
            time.sleep(READY_POLL_S)

    def stop(self, timeout_s: float = 60.0) -> int | None:
        """SIGTERM, then wait; SIGKILL only if it does not end in `timeout_s`. Returns the exit status."""
        process = self.process
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None
        return process.returncode


def _answers_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False
