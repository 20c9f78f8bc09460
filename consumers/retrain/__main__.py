"""`python -m consumers.retrain`: the retrain consumer in the foreground (as `battery-ct serve retrain`)."""

from __future__ import annotations

import asyncio
import logging
import sys

from consumers.retrain.service import run
from schemas.settings import Settings


def main() -> int:
    settings = Settings()
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    return asyncio.run(run(settings))


if __name__ == "__main__":
    raise SystemExit(main())
