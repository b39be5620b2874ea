"""The admin's view of a request relayed by one of the service's trusted proxies: the client's
address (``X-Forwarded-For``) and the scheme the client used (``X-Forwarded-Proto``).

Piccolo admin checks a change's ``Origin`` against the allowed hosts only when the request is
HTTPS, and Starlette builds redirects from the scheme: behind a proxy ending TLS both saw plain
HTTP. Its login limiter keys by ``request.client``, which was the proxy's address for everyone.
Believed only from ``BOOKSTORE_TRUSTED_PROXIES``, as the API believes them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from litestar.enums import ScopeType

if TYPE_CHECKING:
    from litestar.types import ASGIApp, Receive, Scope, Send

    from bookstore.core.ratelimit import ClientIdentity, TrustedProxies

__all__ = ["ForwardedRequest"]

_FORWARDED_PROTO: Final = b"x-forwarded-proto"
_SCHEMES: Final = frozenset({"http", "https"})


class ForwardedRequest:
    """Sets ``scope["client"]`` and ``scope["scheme"]`` from a trusted proxy's headers."""

    def __init__(self, app: ASGIApp, identity: ClientIdentity, proxies: TrustedProxies) -> None:
        self._app = app
        self._identity = identity
        self._proxies = proxies

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == ScopeType.HTTP and self._proxies.trusts_peer(scope):
            peer = scope.get("client")
            scope["client"] = (self._identity.client_ip(scope), peer[1] if peer else 0)
            # The scheme the client used: the first hop's, as the outermost proxy recorded it.
            forwarded = next((bytes(value) for name, value in scope["headers"] if name == _FORWARDED_PROTO), b"")
            scheme = forwarded.decode("latin-1").split(",")[0].strip().lower()
            if scheme in _SCHEMES:
                scope["scheme"] = scheme
        await self._app(scope, receive, send)
