"""Serves the dashboard from ``web/``: the page routes (deep links all get the single page),
``/static`` and the Plotly.js bundle streamed from the installed ``plotly`` package."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.responses import FileResponse, HTMLResponse, PlainTextResponse, Response
from fastapi.staticfiles import StaticFiles

WEB_DIR = Path(__file__).resolve().parent.parent / "web"
PAGES = (
    "/",
    "/pareto",
    "/models",
    "/models/{model_id}",
    "/devices",
    "/tables",
    "/predictors",
    "/predictors/{predictor_id}",
)
PLOTLY_ROUTE = "/static/vendor/plotly.min.js"
_NO_CACHE = {"Cache-Control": "no-cache"}


class RevalidatedStaticFiles(StaticFiles):
    """Static files that browsers revalidate (ETag, 304) so an upgrade is seen at once."""

    def file_response(self, *args: Any, **kwargs: Any) -> Response:
        response = super().file_response(*args, **kwargs)
        response.headers.setdefault("Cache-Control", "no-cache")
        return response


def plotly_bundle() -> Path | None:
    """``plotly/package_data/plotly.min.js`` of the installed ``plotly`` package, if any."""
    spec = importlib.util.find_spec("plotly")
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        path = Path(root) / "package_data" / "plotly.min.js"
        if path.is_file():
            return path
    return None


def mount_web(app: FastAPI) -> None:
    static = WEB_DIR / "static"
    index = static / "index.html"

    async def plotly_js() -> Response:
        path = plotly_bundle()
        if path is None:
            return PlainTextResponse(
                "console.error('plotly is not installed on the coordinator: pip install plotly');",
                status_code=404,
                media_type="text/javascript",
            )
        return FileResponse(
            path,
            media_type="text/javascript",
            headers={"Cache-Control": "public, max-age=86400"},
        )

    # Before the /static mount: routes are matched in order.
    app.add_api_route(
        PLOTLY_ROUTE, plotly_js, methods=["GET"], include_in_schema=False, response_model=None
    )
    if static.is_dir():
        app.mount("/static", RevalidatedStaticFiles(directory=static), name="static")

    async def page() -> FileResponse | HTMLResponse:
        if index.is_file():
            return FileResponse(index, media_type="text/html", headers=_NO_CACHE)
        return HTMLResponse("<h1>LatencyLab</h1><p>API docs: <a href='/docs'>/docs</a></p>")

    for path in PAGES:
        app.add_api_route(path, page, methods=["GET"], include_in_schema=False, response_model=None)
