"""local_stack.free_ports: a taken port is replaced by a free one; addresses split into host and port."""

from __future__ import annotations

import socket

import pytest

from local_stack.free_ports import can_bind, free_port, is_listening, pick_port, split_host_port


def test_pick_port_keeps_a_free_preferred_port_and_replaces_a_taken_one() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        busy = taken.getsockname()[1]
        assert is_listening("127.0.0.1", busy)
        assert not can_bind("127.0.0.1", busy)
        replacement = pick_port(busy)
        assert replacement != busy and can_bind("127.0.0.1", replacement)
    free = free_port()
    assert pick_port(free) == free
    assert pick_port(free, avoid={free}) != free


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("localhost:9092", ("localhost", 9092)),
        ("127.0.0.1:19092,127.0.0.1:19093", ("127.0.0.1", 19092)),
        ("broker", ("broker", 9092)),
        ("[::1]:9000", ("::1", 9000)),
    ],
)
def test_split_host_port(address: str, expected: tuple[str, int]) -> None:
    assert split_host_port(address, 9092) == expected
