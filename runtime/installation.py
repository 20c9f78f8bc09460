"""battery-ct is an application, installed only in its own environment (the virtualenv of `make
install`, or the image): its top-level import names (`schemas`, `storage`, `consumers`, ...) are
also names of unrelated distributions on PyPI, so in a shared environment one of theirs could
shadow one of ours. Every entry point checks at start that each name is ours, and refuses with
one line naming the impostor otherwise (docs/ARCHITECTURE.md, "Packaging")."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterable

# Set in the __init__ of every top-level package of this project.
MARKER = "__battery_ct__"
PACKAGES = (
    "schemas",
    "model_core",
    "storage",
    "runtime",
    "producers",
    "consumers",
    "facade",
    "local_stack",
    "examples",
    "reviews",
)


class PackageClash(Exception):  # noqa: N818 (a state of the environment, said to the operator)
    """A top-level package of battery-ct resolves to another distribution's module."""


def check_own_packages(names: Iterable[str] = PACKAGES) -> None:
    """Raise `PackageClash` when a package name does not import battery-ct's package."""
    for name in names:
        try:
            module = importlib.import_module(name)
        except ImportError as exc:
            raise PackageClash(
                f"battery-ct's package {name!r} cannot be imported ({exc}): reinstall battery-ct"
            ) from exc
        if getattr(module, MARKER, False) is not True:
            where = getattr(module, "__file__", None) or "a namespace package"
            raise PackageClash(
                f"the module {name!r} at {where} is not battery-ct's: another distribution shadows it; "
                "install battery-ct in its own virtual environment (make install) or use the image"
            )


def clash_exit_status() -> int | None:
    """At an entry point: None when every package is ours, else 2 after saying why on stderr."""
    try:
        check_own_packages()
    except PackageClash as exc:
        print(f"battery-ct: {exc}", file=sys.stderr)
        return 2
    return None
