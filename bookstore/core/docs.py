"""The interactive documentation page (Scalar at ``/docs``): where its script comes from, and the
route that serves a local copy of it from this service, so the page works offline.

Scalar's page needs its ~3 MB browser bundle. By default it comes from the pinned jsDelivr URL;
with ``BOOKSTORE_DOCS_ASSETS_DIR`` it comes from this service, same origin, fetched once by
``scripts/fetch-scalar`` (npm's tarball of ``@scalar/api-reference`` at :data:`SCALAR_VERSION`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Final

import anyio
from litestar import Request, get
from litestar.openapi.plugins import ScalarRenderPlugin
from litestar.params import HeaderParameter
from litestar.response.base import ASGIResponse
from litestar.status_codes import HTTP_304_NOT_MODIFIED

from bookstore.core.errors import ServiceUnavailableError
from bookstore.core.files import file_response
from bookstore.core.http import if_none_match_names
from bookstore.settings import SCALAR_BUNDLE_NAME

if TYPE_CHECKING:
    from pathlib import Path

    from litestar.handlers import HTTPRouteHandler

__all__ = ["DOCS_ASSETS_PATH", "SCALAR_VERSION", "create_scalar_bundle_route", "create_scalar_plugin"]

# Pinned so the docs page does not change under us (see stack-facts §3); scripts/fetch-scalar
# fetches this version too.
SCALAR_VERSION: Final = "1.34.6"
DOCS_ASSETS_PATH: Final = "/docs/assets"
# System fonts instead of Scalar's from fonts.scalar.com, so the page's CSP needs no font host and
# an offline page logs no failed font loads (research for issue 14, §5).
_SCALAR_OPTIONS: Final = {"withDefaultFonts": False}
# Litestar's default favicon and stylesheet come from jsDelivr: an offline page would log their
# failures. An empty icon and an empty stylesheet as data: URLs need no request at all.
_NO_FAVICON: Final = "<link rel='icon' href='data:,'>"
_NO_STYLESHEET: Final = "data:text/css,"
_JAVASCRIPT: Final = "text/javascript"  # Litestar adds the charset of text types
_BUNDLE_CACHING: Final = "public, max-age=3600"


def create_scalar_plugin(docs_assets_dir: Path | None) -> ScalarRenderPlugin:
    """Scalar at the docs root, loading its bundle from ``docs_assets_dir`` through this service
    (see :func:`create_scalar_bundle_route`) or, when None, from the pinned CDN URL."""
    if docs_assets_dir is None:
        return ScalarRenderPlugin(path="/", version=SCALAR_VERSION, favicon=_NO_FAVICON, options=_SCALAR_OPTIONS)
    return ScalarRenderPlugin(
        path="/",
        js_url=f"{DOCS_ASSETS_PATH}/{SCALAR_BUNDLE_NAME}",
        css_url=_NO_STYLESHEET,
        favicon=_NO_FAVICON,
        options=_SCALAR_OPTIONS,
    )


def create_scalar_bundle_route(docs_assets_dir: Path) -> HTTPRouteHandler:
    """``GET /docs/assets/standalone.js``: the bundle in ``docs_assets_dir``, and nothing else of
    that directory (a static-files router would serve whatever else someone puts there)."""
    bundle = docs_assets_dir / SCALAR_BUNDLE_NAME

    # Revalidated hourly rather than kept for good: its URL stays the same when the bundle is refreshed.
    @get(f"{DOCS_ASSETS_PATH}/{SCALAR_BUNDLE_NAME}", include_in_schema=False)
    async def scalar_bundle(
        request: Request[Any, Any, Any],
        if_none_match: Annotated[str | None, HeaderParameter(name="If-None-Match", max_length=1024)] = None,
    ) -> ASGIResponse:
        try:
            stat = await anyio.Path(bundle).stat()
        except OSError:
            # Checked at start-up; gone since (the directory moved or was emptied).
            raise ServiceUnavailableError(
                "The documentation's script is missing on the server; run scripts/fetch-scalar."
            ) from None
        headers = {"ETag": f'"{stat.st_size:x}-{stat.st_mtime_ns:x}"', "Cache-Control": _BUNDLE_CACHING}
        if if_none_match_names(if_none_match, headers["ETag"]):
            return ASGIResponse(status_code=HTTP_304_NOT_MODIFIED, headers=headers.items())
        return await file_response(request, bundle, size=stat.st_size, media_type=_JAVASCRIPT, headers=headers)

    return scalar_bundle
