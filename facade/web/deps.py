"""The review pages' dependencies, as named Annotated aliases: the review database, who is signed in
(or a redirect to the sign-in page), and a form whose CSRF token has been checked."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Annotated, Any, TypeVar
from urllib.parse import urlsplit

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from facade.api.deps import ServicesDep
from facade.web.errors import LoginRequired, PageError, csrf_refused
from facade.web.render import PREFIX
from reviews.database import Database
from reviews.people import Person, csrf_matches, signed_in

T = TypeVar("T")

SESSION_COOKIE = "review_session"
CSRF_FIELD = "csrf_token"
MAX_FORM_FIELDS = 20
PERSON_KEY = "review.person"


def review_database(services: ServicesDep) -> Database:
    station = services.review
    if station.database is None:
        raise PageError(503, "Review station unavailable", f"{station.problem[:1].upper()}{station.problem[1:]}.")
    return station.database


DatabaseDep = Annotated[Database, Depends(review_database)]


async def in_database(database: Database, work: Callable[[Session], T]) -> T:
    """One unit of work in a worker thread: the event loop never waits on the database."""
    return await asyncio.to_thread(database.run, work)


def safe_next(candidate: str | None) -> str:
    """Where to go after signing in: a path of the review station on this host, never another site."""
    default = f"{PREFIX}/"
    if not candidate or len(candidate) > 2000 or "\\" in candidate or any(ord(c) < 32 for c in candidate):
        return default
    parts = urlsplit(candidate)
    if parts.scheme or parts.netloc or candidate.startswith("//"):
        return default
    if parts.path != PREFIX and not parts.path.startswith(f"{PREFIX}/"):
        return default
    return candidate


def _here(request: Request) -> str:
    # Where the person was going; a POST's target is no page to come back to, its referring page is.
    if request.method == "GET":
        query = request.url.query
        return request.url.path + (f"?{query}" if query else "")
    return f"{PREFIX}/"


async def current_person(request: Request, database: DatabaseDep) -> Person:
    token = request.cookies.get(SESSION_COOKIE)
    person = await in_database(database, lambda s: signed_in(s, token)) if token else None
    if person is None:
        raise LoginRequired(safe_next(_here(request)))
    request.scope[PERSON_KEY] = person  # an error page of this request still shows who is signed in
    return person


PersonDep = Annotated[Person, Depends(current_person)]


def require_engineer(person: PersonDep) -> Person:
    if not person.is_engineer:
        raise PageError(403, "Engineers only", "Only an engineer may do this; you are signed in as an operator.")
    return person


EngineerDep = Annotated[Person, Depends(require_engineer)]


async def form_fields(request: Request) -> dict[str, str]:
    """The posted form as plain strings (no file uploads are accepted anywhere)."""
    form = await request.form(max_files=0, max_fields=MAX_FORM_FIELDS)
    return {key: value for key, value in form.items() if isinstance(value, str)}


async def checked_form(request: Request, person: PersonDep) -> dict[str, Any]:
    """The posted form of a signed-in person, once its CSRF token matches their session's."""
    fields = await form_fields(request)
    if not csrf_matches(person, fields.pop(CSRF_FIELD, None)):
        raise csrf_refused()
    return fields


CheckedFormDep = Annotated[dict[str, Any], Depends(checked_form)]
