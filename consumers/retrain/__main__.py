"""`python -m consumers.retrain`: the retrain consumer in the foreground (as `battery-ct serve retrain`)."""

from __future__ import annotations

from consumers.retrain.service import run
from runtime.shutdown import run_in_foreground

if __name__ == "__main__":
    raise SystemExit(run_in_foreground(run))
