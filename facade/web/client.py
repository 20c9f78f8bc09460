"""A scripted person at the review station, over HTTP: sign in through the login form (its CSRF
token included) and read what the queue page says. The demo, the queue benchmark and the tests use
it; a browser does the same with a person behind it."""

from __future__ import annotations

import html
import re

import httpx

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
_WAITING = re.compile(r'<span class="count">(\d+) waiting</span>')


class UnexpectedPageError(RuntimeError):
    """The station did not answer as a signed-in person would see it; the message says what it did."""


def csrf_token(page: httpx.Response) -> str:
    """The CSRF token of the first form on `page`."""
    found = _CSRF.search(page.text)
    if found is None:
        raise UnexpectedPageError(f"{page.url} answered {page.status_code} without a form")
    return html.unescape(found.group(1))


def sign_in(client: httpx.Client, station_url: str, username: str, password: str) -> httpx.Response:
    """Sign `client` in (its cookie jar keeps the session); the page the login leads to, the queue.

    `station_url` is the station's root, e.g. http://127.0.0.1:8000/review/. Follows redirects.
    """
    root = station_url.rstrip("/")
    login = client.get(f"{root}/login", follow_redirects=True)
    answer = client.post(
        f"{root}/login",
        data={"csrf_token": csrf_token(login), "username": username, "password": password},
        follow_redirects=True,
    )
    if answer.status_code != 200 or f"Signed in as {username}" not in answer.text:
        raise UnexpectedPageError(f"signing in as {username} answered {answer.status_code}")
    return answer


def waiting(queue_page: httpx.Response) -> int:
    """The number of cells the queue page says wait for a decision (all pages of the filter)."""
    found = _WAITING.search(queue_page.text)
    if queue_page.status_code != 200 or found is None:
        raise UnexpectedPageError(f"{queue_page.url} answered {queue_page.status_code}, not a queue")
    return int(found.group(1))
