"""The guard against another distribution's `schemas`, `storage`, ... shadowing ours."""

import sys
import tomllib
import types
from pathlib import Path

import pytest

from runtime.installation import MARKER, PACKAGES, PackageClash, check_own_packages

REPO = Path(__file__).resolve().parents[2]


def test_every_installed_top_level_package_is_guarded_and_marked() -> None:
    patterns = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    installed = {p.rstrip("*") for p in patterns}
    assert installed == set(PACKAGES)
    check_own_packages()  # this checkout: every one is ours


def test_a_shadowing_module_is_refused_with_its_name_and_place(monkeypatch: pytest.MonkeyPatch) -> None:
    impostor = types.ModuleType("storage")
    impostor.__file__ = "/usr/lib/python3/dist-packages/storage/__init__.py"
    monkeypatch.setitem(sys.modules, "storage", impostor)
    with pytest.raises(
        PackageClash, match=r"'storage' at /usr/lib/python3/dist-packages/storage.* is not battery-ct's"
    ):
        check_own_packages()
    setattr(impostor, MARKER, True)
    check_own_packages()


def test_the_command_line_refuses_to_start_in_a_clashing_environment(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from facade.cli import main

    monkeypatch.setitem(sys.modules, "schemas", types.ModuleType("schemas"))
    assert main(["infra", "status"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not battery-ct's" in err
