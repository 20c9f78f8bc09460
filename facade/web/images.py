"""A cell's scan and heat map for the browser, read through the facade (the object store is not
the browser's to reach): the scan decoded as the detector decodes it, centre square and all, so the
heat map drawn on the model's input lies exactly over it, and sent as a PNG."""

from __future__ import annotations

import io

import numpy as np
from fastapi import APIRouter
from fastapi.responses import Response
from PIL import Image
from sqlalchemy.orm import Session

from facade.api.deps import ServicesDep
from facade.api.errors import as_api_error
from facade.web.deps import DatabaseDep, PersonDep, in_database
from facade.web.errors import PageError
from reviews.tables import Cell

router = APIRouter()

DISPLAY_PX = 768  # the slice's side on screen: sharp on a laptop, a few hundred KiB per PNG
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
IMAGE_HEADERS = {"Cache-Control": "private, max-age=300", "X-Content-Type-Options": "nosniff"}


def gray_png(image: np.ndarray) -> bytes:
    """A [0, 1] float slice as an 8-bit gray PNG."""
    buffer = io.BytesIO()
    Image.fromarray((np.clip(image, 0, 1) * 255).round().astype(np.uint8), mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


async def _urls(database: DatabaseDep, scan_id: str) -> tuple[str, str | None]:
    def read(session: Session) -> tuple[str, str | None] | None:
        cell = session.get(Cell, scan_id)
        return None if cell is None else (cell.image_url, cell.heatmap_url)

    urls = await in_database(database, read)
    if urls is None:
        raise PageError(404, "No such cell", f"There is no cell {scan_id!r} in the review database.")
    return urls


def _unavailable(exc: Exception, what: str) -> PageError:
    error = as_api_error(exc)
    if error is None:
        raise exc
    return PageError(error.status, f"{what} unavailable", error.message)


@router.get("/cells/{scan_id:path}/image", response_class=Response)
async def scan_image(scan_id: str, _: PersonDep, database: DatabaseDep, services: ServicesDep) -> Response:
    image_url, _heatmap = await _urls(database, scan_id)
    try:
        _ref, data = await services.fetch_scan(image_url)
        square = await services.decode_scan(data, DISPLAY_PX)
        png = await services.in_decode_pool(gray_png, square)
    except Exception as exc:
        raise _unavailable(exc, "Scan image") from exc
    return Response(png, media_type="image/png", headers=IMAGE_HEADERS)


@router.get("/cells/{scan_id:path}/heatmap", response_class=Response)
async def heatmap_image(scan_id: str, _: PersonDep, database: DatabaseDep, services: ServicesDep) -> Response:
    _image, heatmap_url = await _urls(database, scan_id)
    if heatmap_url is None:
        raise PageError(404, "No heat map", f"The verdict of {scan_id!r} has no heat map.")
    try:
        data = await services.fetch_heatmap(heatmap_url)
    except Exception as exc:
        raise _unavailable(exc, "Heat map") from exc
    if not data.startswith(PNG_MAGIC):  # only our own PNGs are passed on, never bytes a browser might sniff
        raise PageError(422, "Heat map unreadable", f"{heatmap_url} is not a PNG.")
    return Response(data, media_type="image/png", headers=IMAGE_HEADERS)
