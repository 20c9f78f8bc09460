"""Rendering the review pages: the Jinja2 templates with their filters, flash messages carried
across a redirect, and the headers every page gets (no caching, no framing, nothing but our own
scripts and styles: a plant network has no internet and the pages need none)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse
from starlette.templating import Jinja2Templates

from reviews.decisions import DEFECT_KINDS
from reviews.people import Person

HERE = Path(__file__).parent
STATIC_DIR = HERE / "static"
PREFIX = "/review"
FLASH_COOKIE = "review_flash"
FLASH_MAX = 300

PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def cell_url(scan_id: str, tail: str = "") -> str:
    """The cell page (or its `tail`: /image, /heatmap, /decisions) of a scan id that may hold slashes."""
    return f"{PREFIX}/cells/{quote(scan_id, safe='/')}{tail}"


def when(moment: datetime | None) -> str:
    return "" if moment is None else moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def number(value: Any, digits: int = 4) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    return f"{value:.{digits}g}" if isinstance(value, float) else str(value)


def percent(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.0f} %"


templates = Jinja2Templates(directory=HERE / "templates")
templates.env.filters.update(cell_url=cell_url, when=when, number=number, percent=percent)
templates.env.globals.update(defect_kinds=DEFECT_KINDS, prefix=PREFIX)


def render(
    request: Request,
    template: str,
    *,
    person: Person | None,
    title: str,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    flash = request.cookies.get(FLASH_COOKIE)
    response = templates.TemplateResponse(
        request,
        template,
        {"person": person, "title": title, "flash": flash[:FLASH_MAX] if flash else None, **context},
        status_code=status_code,
        headers=PAGE_HEADERS,
    )
    if flash:
        response.delete_cookie(FLASH_COOKIE, path=PREFIX)
    return response


def redirect(location: str, *, flash: str | None = None, secure: bool = True) -> RedirectResponse:
    """303 See Other (a POST is followed by a GET), with a message for the next page."""
    response = RedirectResponse(location, status_code=303, headers={"Cache-Control": "no-store"})
    if flash:
        response.set_cookie(
            FLASH_COOKIE, flash[:FLASH_MAX], max_age=60, path=PREFIX, httponly=True, samesite="strict", secure=secure
        )
    return response
