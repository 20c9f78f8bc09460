"""Signing in and out. The sign-in form has no session yet, so its CSRF token is a double submit:
the same random value in a cookie and in a hidden field, which another site can neither read nor set."""

from __future__ import annotations

import hmac
import secrets
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy.orm import Session

from facade.api.deps import SettingsDep
from facade.web.deps import (
    CSRF_FIELD,
    SESSION_COOKIE,
    CheckedFormDep,
    DatabaseDep,
    form_fields,
    in_database,
    safe_next,
)
from facade.web.errors import csrf_refused
from facade.web.forms import LoginForm
from facade.web.render import PREFIX, redirect, render
from reviews.people import Person, authenticate, close_session, open_session, signed_in

router = APIRouter()

LOGIN_CSRF_COOKIE = "review_login_csrf"
LOGIN_FORM_MINUTES = 60


def _login_page(
    request: Request, secure: bool, *, next_path: str, error: str | None = None, status_code: int = 200
) -> HTMLResponse:
    token = request.cookies.get(LOGIN_CSRF_COOKIE) or secrets.token_urlsafe(32)
    response = render(
        request,
        "login.html",
        person=None,
        title="Sign in",
        next_path=next_path,
        csrf_token=token,
        error=error,
        status_code=status_code,
    )
    response.set_cookie(
        LOGIN_CSRF_COOKIE,
        token,
        max_age=LOGIN_FORM_MINUTES * 60,
        path=f"{PREFIX}/login",
        httponly=True,
        samesite="strict",
        secure=secure,
    )
    return response


@router.get("/login", response_class=HTMLResponse)
async def login_page(
    request: Request,
    settings: SettingsDep,
    database: DatabaseDep,
    next: Annotated[str | None, Query(max_length=2000)] = None,
) -> Response:
    token = request.cookies.get(SESSION_COOKIE)
    if token and await in_database(database, lambda s: signed_in(s, token)) is not None:
        return RedirectResponse(safe_next(next), status_code=303)
    return _login_page(request, settings.review_secure_cookies, next_path=safe_next(next))


@router.post("/login", response_class=HTMLResponse)
async def login(request: Request, settings: SettingsDep, database: DatabaseDep) -> Response:
    fields = await form_fields(request)
    expected = request.cookies.get(LOGIN_CSRF_COOKIE)
    presented = fields.get(CSRF_FIELD)
    if not expected or not presented or not hmac.compare_digest(expected.encode(), presented.encode()):
        raise csrf_refused()
    secure = settings.review_secure_cookies
    try:
        form = LoginForm.model_validate(fields)
    except ValidationError:
        return _login_page(
            request,
            secure,
            next_path=safe_next(fields.get("next")),
            error="Enter a user name and a password.",
            status_code=422,
        )
    next_path = safe_next(form.next)

    def sign_in(session: Session) -> tuple[str, Person] | None:
        user = authenticate(session, form.username, form.password)
        return None if user is None else open_session(session, user, hours=settings.review_session_hours)

    opened = await in_database(database, sign_in)
    if opened is None:
        return _login_page(request, secure, next_path=next_path, error="Wrong user name or password.", status_code=401)
    token, person = opened
    response = redirect(next_path, flash=f"Signed in as {person.username} ({person.role}).", secure=secure)
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=int(settings.review_session_hours * 3600),
        path=PREFIX,
        httponly=True,
        samesite="strict",
        secure=secure,
    )
    response.delete_cookie(LOGIN_CSRF_COOKIE, path=f"{PREFIX}/login")
    return response


@router.post("/logout")
async def logout(request: Request, settings: SettingsDep, database: DatabaseDep, _: CheckedFormDep) -> Response:
    token = request.cookies.get(SESSION_COOKIE)
    await in_database(database, lambda s: close_session(s, token))
    response = redirect(f"{PREFIX}/login", flash="Signed out.", secure=settings.review_secure_cookies)
    response.delete_cookie(SESSION_COOKIE, path=PREFIX)
    return response
