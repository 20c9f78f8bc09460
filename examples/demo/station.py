"""The demo's review station: sign-ins for an operator and an engineer, the verdicts awaited in its
database, and a check that its queue answers as a person would see it (signed in, over HTTP).

The station is the facade's /review pages on the review consumer's database (SQLite in the demo's
work directory). The two users share one password made for this run and printed with the URL.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from functools import partial

import httpx
from sqlalchemy import func, select

from facade.web.client import UnexpectedPageError, sign_in, waiting
from reviews.database import Database
from reviews.people import Role, add_user
from reviews.tables import VerdictRecord

USERS: tuple[tuple[str, Role], ...] = (("operator", "operator"), ("engineer", "engineer"))
POLL_S = 0.2  # the database has no change feed: its count is asked


class StationError(RuntimeError):
    """The review station did not answer as expected; the message says what it did."""


@dataclass(frozen=True)
class StationLogin:
    url: str  # the queue page
    password: str

    @property
    def users(self) -> tuple[str, ...]:
        return tuple(name for name, _ in USERS)

    def line(self) -> str:
        return f"{self.url} (sign in as {' or '.join(self.users)}, password {self.password})"


def create_logins(database_url: str) -> str:
    """The review database, migrated, with the demo's two people; their password, made for this run."""
    password = secrets.token_urlsafe(12)
    database = Database.open(database_url)
    try:
        for username, role in USERS:
            database.run(partial(add_user, username=username, password=password, role=role, replace=True))
    finally:
        database.close()
    return password


def await_verdicts(database_url: str, count: int, timeout_s: float) -> int:
    """Wait until the review consumer has stored `count` verdicts; returns how many it has."""
    database = Database.open(database_url)
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            stored = int(database.run(lambda s: s.scalar(select(func.count()).select_from(VerdictRecord))) or 0)
            if stored >= count:
                return stored
            if time.monotonic() > deadline:
                raise StationError(f"the review database has {stored} of {count} verdicts after {timeout_s:.0f} s")
            time.sleep(POLL_S)
    finally:
        database.close()


def waiting_in_queue(login: StationLogin, username: str = "operator") -> int:
    """Sign in through the login form and read the queue page's count of cells waiting."""
    with httpx.Client(timeout=30) as client:
        try:
            return waiting(sign_in(client, login.url, username, login.password))
        except UnexpectedPageError as exc:
            raise StationError(str(exc)) from exc
