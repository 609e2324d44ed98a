"""Serves the dashboard from ``web/`` (deep links fall back to the single page)."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles

WEB_DIR = Path(__file__).resolve().parent.parent / "web"
PAGES = ("/", "/pareto", "/models", "/models/{model_id}", "/devices", "/tables")


def mount_web(app: FastAPI) -> None:
    static = WEB_DIR / "static"
    if static.is_dir():
        app.mount("/static", StaticFiles(directory=static), name="static")
    index = static / "index.html"

    async def page() -> FileResponse | HTMLResponse:
        if index.is_file():
            return FileResponse(index, media_type="text/html")
        return HTMLResponse("<h1>LatencyLab</h1><p>API docs: <a href='/docs'>/docs</a></p>")

    for path in PAGES:
        app.add_api_route(path, page, methods=["GET"], include_in_schema=False, response_model=None)
