"""`python -m consumers.inference`: the inference consumer in the foreground (as `battery-ct serve inference`)."""

from __future__ import annotations

from consumers.inference.service import run
from runtime.shutdown import run_in_foreground

if __name__ == "__main__":
    raise SystemExit(run_in_foreground(run))
