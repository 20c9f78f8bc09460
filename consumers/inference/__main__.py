"""`python -m consumers.inference`: the inference consumer in the foreground (as `battery-ct serve inference`)."""

from __future__ import annotations

import asyncio
import logging
import sys

from consumers.inference.service import run
from schemas.settings import Settings


def main() -> int:
    settings = Settings()
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    return asyncio.run(run(settings))


if __name__ == "__main__":
    raise SystemExit(main())
