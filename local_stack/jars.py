"""The Kafka broker's jars: resolved by Maven from the package's `broker/pom.xml` into a cache outside the repo.

The cache holds one directory per content of the pom, so changing the Kafka version in the pom
fetches the new jars instead of mixing them with the old ones. The first fetch downloads about
60 jars (tens of MB) and takes a minute or so; later runs find them in the cache.

`python -m local_stack.jars` fetches them and prints where (what `make kafka-jars` runs before the
tests, so that the first test session does not wait for Maven).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path

from local_stack.errors import InfraError, MissingToolError
from schemas.settings import Settings

# Package data, read through importlib.resources: the same in a checkout and in an installed package.
BROKER_FILES = files("local_stack") / "broker"
POM = BROKER_FILES / "pom.xml"
_COMPLETE = ".complete"
_DOWNLOADED = re.compile(r"^Downloaded from [^:]+: \S+/([^/\s]+) \(")

Progress = Callable[[str], None]


def require_java() -> str:
    java = shutil.which("java")
    if java is None:
        raise MissingToolError(
            "java not found: the local Kafka broker needs Java 17 or newer "
            "(Debian/Ubuntu: apt-get install openjdk-17-jre-headless), on PATH"
        )
    return java


def libs_dir_for(libs_root: Path, pom: Traversable = POM) -> Path:
    digest = hashlib.sha256(pom.read_bytes()).hexdigest()[:12]
    return libs_root / digest


def cached_libs(libs_root: Path, pom: Traversable = POM) -> Path | None:
    """The jar directory for this pom if a complete fetch is cached, else None."""
    target = libs_dir_for(libs_root, pom)
    return target if (target / _COMPLETE).exists() else None


def ensure_kafka_libs(libs_root: Path, *, pom: Traversable = POM, progress: Progress = lambda _: None) -> Path:
    """The directory of the broker's jars, fetching them with Maven first when they are not cached."""
    if not pom.is_file():
        raise InfraError(f"{pom} not found: battery-ct was installed without the package data of local_stack")
    if (cached := cached_libs(libs_root, pom)) is not None:
        return cached
    mvn = shutil.which("mvn")
    if mvn is None:
        raise MissingToolError(
            "mvn (Apache Maven) not found: it fetches the Kafka broker jars on the first run "
            "(Debian/Ubuntu: apt-get install maven)"
        )
    target = libs_dir_for(libs_root, pom)
    # Fetch into a private directory and rename: two concurrent first runs never see half a cache.
    staging = libs_root / f".{target.name}.{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    # Maven runs on a copy of the pom in a directory of ours: an installed package's may be read-only.
    project = staging / "project"
    project.mkdir(parents=True)
    (project / "pom.xml").write_bytes(pom.read_bytes())
    progress(f"fetching the Kafka broker jars with Maven into {target} (first run only, about a minute) ...")
    command = [
        mvn,
        "-B",
        "-f",
        str(project / "pom.xml"),
        "dependency:copy-dependencies",
        f"-DoutputDirectory={staging}",
    ]
    try:
        output = _run_with_progress(command, progress)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    shutil.rmtree(project)
    jars = list(staging.glob("*.jar"))
    if not any(j.name.startswith("kafka_2.13-") for j in jars):
        shutil.rmtree(staging, ignore_errors=True)
        raise InfraError("Maven did not fetch the Kafka jars:\n" + "\n".join(output[-30:]))
    (staging / _COMPLETE).write_text(f"{len(jars)} jars\n")
    try:
        staging.replace(target)
    except OSError:
        # Another process finished first; its copy is as good as ours.
        shutil.rmtree(staging, ignore_errors=True)
    progress(f"{len(jars)} jars ready in {target}")
    return target


def _run_with_progress(command: list[str], progress: Progress) -> list[str]:
    """Run Maven, reporting every tenth downloaded file; the output is returned for error messages."""
    lines: list[str] = []
    downloads = 0
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as process:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line.rstrip())
            if match := _DOWNLOADED.match(line.strip()):
                downloads += 1
                if downloads % 10 == 1:
                    progress(f"  downloaded {downloads} files ({match.group(1)})")
        returncode = process.wait()
    if returncode != 0:
        errors = [line for line in lines if "ERROR" in line] or lines
        raise InfraError(f"Maven failed (exit status {returncode}):\n" + "\n".join(errors[-30:]))
    return lines


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
