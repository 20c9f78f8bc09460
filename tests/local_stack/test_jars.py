"""local_stack.jars: the broker's jar cache is keyed by the pom (package data), missing tools are clear errors."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import local_stack
from local_stack.errors import MissingToolError
from local_stack.jars import POM, cached_libs, ensure_kafka_libs, libs_dir_for


def test_jar_cache_is_keyed_by_the_pom(tmp_path: Path) -> None:
    pom = tmp_path / "pom.xml"
    pom.write_text("<project>1</project>")
    first = libs_dir_for(tmp_path / "libs", pom)
    assert cached_libs(tmp_path / "libs", pom) is None
    first.mkdir(parents=True)
    (first / ".complete").write_text("57 jars")
    assert ensure_kafka_libs(tmp_path / "libs", pom=pom) == first  # cached: Maven is not needed
    pom.write_text("<project>2</project>")
    assert libs_dir_for(tmp_path / "libs", pom) != first


def test_missing_maven_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pom = tmp_path / "pom.xml"
    pom.write_text("<project/>")
    monkeypatch.setenv("PATH", str(tmp_path))  # neither mvn nor java on it
    with pytest.raises(MissingToolError, match="apt-get install maven"):
        ensure_kafka_libs(tmp_path / "libs", pom=pom)


def test_missing_java_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from local_stack.jars import require_java

    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(MissingToolError, match="Java 17"):
        require_java()


def test_maven_download_lines_become_progress() -> None:
    from local_stack.jars import _DOWNLOADED

    line = "Downloaded from central: https://repo.example/maven2/org/apache/kafka/kafka_2.13/3.9.2/kafka_2.13-3.9.2.jar (6.2 MB at 3.1 MB/s)"  # noqa: E501
    match = _DOWNLOADED.match(line)
    assert match is not None and match.group(1) == "kafka_2.13-3.9.2.jar"


INSTALLED = textwrap.dedent(
    """
    import sys
    from pathlib import Path

    import local_stack
    from local_stack.jars import POM, libs_dir_for
    from local_stack.kafka import render_config

    config = render_config(Path(sys.argv[1]), broker_port=19092, controller_port=19093)
    print(Path(local_stack.__file__).parent, POM.is_file(), libs_dir_for(Path(sys.argv[1])).name)
    """
)


def test_the_broker_files_are_package_data_found_outside_a_checkout(tmp_path: Path) -> None:
    """An installed copy (here: the package alone, outside the repository) reads its pom and configuration."""
    site = tmp_path / "site"
    shutil.copytree(
        Path(local_stack.__file__).parent, site / "local_stack", ignore=shutil.ignore_patterns("__pycache__")
    )
    env = {**os.environ, "PYTHONPATH": str(site)}
    state = tmp_path / "state"
    ran = subprocess.run(
        [sys.executable, "-c", INSTALLED, str(state)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert ran.returncode == 0, ran.stderr
    package, pom_found, digest = ran.stdout.split()
    assert Path(package) == site / "local_stack" and pom_found == "True"
    assert digest == libs_dir_for(tmp_path, POM).name  # the same pom as the checkout's: the same jar cache
    config = (state / "kafka" / "server.properties").read_text()
    assert "19092" in config and str(state / "kafka" / "data") in config
    assert (state / "kafka" / "log4j.properties").read_bytes() == (
        site / "local_stack" / "broker" / "log4j.properties"
    ).read_bytes()
