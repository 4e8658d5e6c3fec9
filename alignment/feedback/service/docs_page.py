"""`/docs`: the Swagger UI page of the API, from files shipped in `fastapi-offline` (no CDN), with
a Content-Security-Policy: the page runs only its own files plus the one inline start-up script
(allowed by its hash), talks only to this service, and no other site may frame it (someone
else's page could otherwise overlay it to make an admin click "Execute")."""
from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)


def offline_docs_assets() -> Path | None:
    """Swagger UI files shipped in a package, so /docs works without reaching a CDN."""
    try:
        import fastapi_offline
    except ImportError:
        return None
    folder = Path(fastapi_offline.__file__).parent / "static"
    return folder if (folder / "swagger-ui-bundle.js").is_file() else None


def docs_headers(html: str) -> dict[str, str]:
    hashes = " ".join(f"'sha256-{base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()}'"
                      for script in _INLINE_SCRIPT.findall(html))
    return {
        # Swagger UI sets inline styles from its script, hence 'unsafe-inline' for styles only.
        "Content-Security-Policy": f"default-src 'self'; script-src 'self' {hashes}; style-src 'self' 'unsafe-inline'; "
                                   "img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
                                   "form-action 'self'; frame-ancestors 'none'",
        "X-Frame-Options": "DENY",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-cache",
    }


def add_offline_docs(app: FastAPI, assets: Path) -> None:
    from fastapi.openapi.docs import get_swagger_ui_html

    app.mount("/docs-assets", StaticFiles(directory=assets), name="docs-assets")
    html = get_swagger_ui_html(
        openapi_url=app.openapi_url or "/openapi.json", title=f"{app.title} - API",
        swagger_js_url="/docs-assets/swagger-ui-bundle.js", swagger_css_url="/docs-assets/swagger-ui.css",
        swagger_favicon_url="/docs-assets/favicon.png",
    ).body.decode()
    headers = docs_headers(html)

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return HTMLResponse(html, headers=headers)
