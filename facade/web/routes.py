"""The review station in the facade: its pages under /review, its static files under
/review/static, and the handlers that answer its failures with pages."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.staticfiles import StaticFiles

from facade.web import cells, checkpoints_page, images, login, stats_page
from facade.web.deps import PERSON_KEY
from facade.web.errors import LoginRequired, PageError
from facade.web.render import PREFIX, STATIC_DIR, render

router = APIRouter(prefix=PREFIX, include_in_schema=False)
router.include_router(login.router)
router.include_router(checkpoints_page.router)
router.include_router(stats_page.router)
# Before the cell page: `/cells/{scan_id:path}` would take ".../image" for a scan id.
router.include_router(images.router)
router.include_router(cells.router)


async def _page_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, PageError)
    person = request.scope.get(PERSON_KEY)  # known when the error came after signing in
    return render(request, "error.html", person=person, title=exc.title, message=exc.message, status_code=exc.status)


async def _login_required(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, LoginRequired)
    return RedirectResponse(exc.location, status_code=303, headers={"Cache-Control": "no-store"})


async def _bare_prefix() -> Response:
    return RedirectResponse(f"{PREFIX}/", status_code=307)


def install(app: FastAPI) -> None:
    app.mount(f"{PREFIX}/static", StaticFiles(directory=STATIC_DIR), name="review-static")
    app.add_api_route(PREFIX, _bare_prefix, include_in_schema=False, response_class=HTMLResponse)
    app.include_router(router)
    app.add_exception_handler(PageError, _page_error)
    app.add_exception_handler(LoginRequired, _login_required)
