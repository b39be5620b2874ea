"""The interactive documentation page (Scalar at ``/docs``): where its script comes from, and the
route that serves a local copy of it from this service, so the page works offline.

Scalar's page needs its ~3 MB browser bundle. By default it comes from the pinned jsDelivr URL;
with ``BOOKSTORE_DOCS_ASSETS_DIR`` it comes from this service, same origin, fetched once by
``scripts/fetch-scalar`` (npm's tarball of ``@scalar/api-reference`` at :data:`SCALAR_VERSION`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from litestar import get
from litestar.datastructures import CacheControlHeader
from litestar.openapi.plugins import ScalarRenderPlugin
from litestar.response import File

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
    @get(
        f"{DOCS_ASSETS_PATH}/{SCALAR_BUNDLE_NAME}",
        include_in_schema=False,
        sync_to_thread=False,
        cache_control=CacheControlHeader(public=True, max_age=3600),
    )
    def scalar_bundle() -> File:
        return File(
            bundle, filename=SCALAR_BUNDLE_NAME, media_type="text/javascript", content_disposition_type="inline"
        )

    return scalar_bundle
