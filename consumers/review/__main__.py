"""`python -m consumers.review`: the review consumer in the foreground (as `battery-ct serve review`)."""

from __future__ import annotations

from consumers.review.service import run
from runtime.shutdown import run_in_foreground

if __name__ == "__main__":
    raise SystemExit(run_in_foreground(run))
