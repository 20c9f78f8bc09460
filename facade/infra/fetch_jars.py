"""`python -m facade.infra.fetch_jars`: fetch the Kafka broker's jars into the cache and print where.

What `make test` runs before the tests, so that the first test session does not wait for Maven.
"""

from __future__ import annotations

import sys

from facade.infra.errors import InfraError
from facade.infra.jars import ensure_kafka_libs
from schemas.settings import Settings


def main() -> int:
    try:
        libs = ensure_kafka_libs(Settings().kafka_libs_dir, progress=lambda line: print(line, file=sys.stderr))
    except InfraError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(libs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
