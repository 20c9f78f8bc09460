"""The local S3 endpoint: moto's standalone server (a real HTTP S3 implementation) as a subprocess.

moto keeps its buckets in memory: they are gone after `down`. Buckets are created on first use
by the code that needs them (ObjectStore.ensure_bucket).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from local_stack.errors import InfraError
from local_stack.jars import Progress
from local_stack.probes import s3_answers
from local_stack.processes import spawn, start_ticks, stop, tail
from local_stack.state import ServiceRecord


def start_moto(
    state_dir: Path, *, port: int, timeout_s: float = 60.0, progress: Progress = lambda _: None
) -> tuple[ServiceRecord, subprocess.Popen[bytes]]:
    """Start moto's S3 server on 127.0.0.1:`port` and return once it answers HTTP."""
    log = state_dir / "s3" / "moto.log"
    process = spawn([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], log_file=log)
    endpoint = f"127.0.0.1:{port}"
    record = ServiceRecord(name="s3", endpoint=endpoint, pid=process.pid, start_ticks=start_ticks(process.pid), log=log)
    progress(f"s3: started moto (pid {process.pid}), waiting for {endpoint} to answer ...")
    deadline = time.monotonic() + timeout_s
    while not s3_answers(endpoint, timeout_s=1.0):
        if process.poll() is not None:
            raise InfraError(
                f"moto's S3 server exited with status {process.returncode} during start "
                f"(is moto[server] installed?); last lines of {log}:\n{tail(log)}"
            )
        if time.monotonic() > deadline:
            stop(process.pid, record.start_ticks)
            process.poll()
            raise InfraError(f"moto's S3 server did not answer within {timeout_s:.0f} s; see {log}")
        time.sleep(0.1)
    return record, process
