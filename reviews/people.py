"""The people of the review station: users with a role, argon2-hashed passwords, and login sessions
(a random token in the browser's cookie, only its hash in the database, with the session's CSRF token)."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from datetime import datetime, timedelta
from typing import Literal

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from pydantic import BaseModel, ConfigDict
from sqlalchemy import delete
from sqlalchemy.orm import Session

from reviews.tables import LoginSession, User
from schemas.base import utc_now

Role = Literal["operator", "engineer"]
ROLES: tuple[Role, ...] = ("operator", "engineer")
MIN_PASSWORD = 8
USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")

_hasher = PasswordHasher()
# Verified when the user does not exist, so an unknown name takes as long as a wrong password.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


class Person(BaseModel):
    """Who is signed in: what the pages and the decision handlers need of them."""

    model_config = ConfigDict(frozen=True)

    username: str
    role: Role
    csrf_token: str

    @property
    def is_engineer(self) -> bool:
        return self.role == "engineer"


class InvalidUser(ValueError):  # noqa: N818
    pass


def add_user(session: Session, username: str, password: str, role: Role, *, replace: bool = False) -> None:
    """Create a user (or, with `replace`, set an existing one's password and role)."""
    if not USERNAME.match(username):
        raise InvalidUser("a user name is 1-64 letters, digits or . _ @ - (starting with a letter or digit)")
    if len(password) < MIN_PASSWORD:
        raise InvalidUser(f"a password has at least {MIN_PASSWORD} characters")
    if role not in ROLES:
        raise InvalidUser(f"a role is one of {', '.join(ROLES)}")
    user = session.get(User, username)
    if user is not None and not replace:
        raise InvalidUser(f"user {username!r} exists (replace it to change its password or role)")
    if user is None:
        user = User(username=username, created_at=utc_now(), disabled=False)
        session.add(user)
    user.password_hash = _hasher.hash(password)
    user.role = role


def users(session: Session) -> list[tuple[str, str, bool]]:
    """(name, role, disabled) of every user, by name."""
    return [(u.username, u.role, u.disabled) for u in session.query(User).order_by(User.username)]


def authenticate(session: Session, username: str, password: str) -> User | None:
    user = session.get(User, username) if USERNAME.match(username) else None
    try:
        _hasher.verify(user.password_hash if user is not None else _DUMMY_HASH, password)
    except (VerificationError, InvalidHashError):
        return None
    if user is None or user.disabled:
        return None
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = _hasher.hash(password)
    return user


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def open_session(session: Session, user: User, *, hours: float, now: datetime | None = None) -> tuple[str, Person]:
    """A new login of `user`: the token for the cookie and who it is."""
    now = now or utc_now()
    token = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(32)
    session.execute(delete(LoginSession).where(LoginSession.expires_at < now))
    session.add(
        LoginSession(
            token_hash=_digest(token),
            username=user.username,
            csrf_token=csrf,
            created_at=now,
            expires_at=now + timedelta(hours=hours),
        )
    )
    return token, Person(username=user.username, role=user.role, csrf_token=csrf)


def signed_in(session: Session, token: str | None, *, now: datetime | None = None) -> Person | None:
    """Who the cookie's token belongs to, while the login lasts and the user is enabled."""
    if not token or len(token) > 128:
        return None
    login = session.get(LoginSession, _digest(token))
    if login is None or login.expires_at <= (now or utc_now()):
        return None
    user = session.get(User, login.username)
    if user is None or user.disabled:
        return None
    return Person(username=user.username, role=user.role, csrf_token=login.csrf_token)


def close_session(session: Session, token: str | None) -> None:
    if token:
        session.execute(delete(LoginSession).where(LoginSession.token_hash == _digest(token)))


def csrf_matches(person: Person, presented: str | None) -> bool:
    return presented is not None and hmac.compare_digest(person.csrf_token.encode(), presented.encode())
