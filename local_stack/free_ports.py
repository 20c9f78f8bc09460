"""Free TCP ports on this machine: is something listening, which port to use when the preferred one is
taken, and `host:port` addresses split into their parts."""

from __future__ import annotations

import socket
from collections.abc import Collection


def is_listening(host: str, port: int, *, timeout_s: float = 0.5) -> bool:
    """True when a TCP connection to host:port is accepted."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def free_port(host: str = "127.0.0.1") -> int:
    """A port the kernel considers free right now (another process may still take it before we do)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def can_bind(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def pick_port(preferred: int | None, *, host: str = "127.0.0.1", avoid: Collection[int] = ()) -> int:
    """`preferred` when it can be bound (and is not in `avoid`), else a free one."""
    if preferred and preferred not in avoid and can_bind(host, preferred):
        return preferred
    while (port := free_port(host)) in avoid:
        pass
    return port


def split_host_port(address: str, default_port: int) -> tuple[str, int]:
    """`host:port` (the first of a comma-separated list) as a pair; `[v6]:port` understood."""
    first = address.split(",")[0].strip()
    if first.startswith("["):
        host, _, rest = first[1:].partition("]")
        return host, int(rest.lstrip(":") or default_port)
    host, sep, port = first.rpartition(":")
    if not sep:
        return first, default_port
    return host, int(port)
