"""Who a request counts against: the user of a validly signed token, else the client's IP."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence

from litestar.types import Scope

__all__ = ["ClientIdentity", "TrustedProxies"]


def _header(scope: Scope, name: bytes) -> str:
    """A request header straight from the ASGI scope, repeated lines joined with commas as RFC 9110
    says they mean (building Litestar's Headers for the two the limiter needs cost more than the
    rest of the counting)."""
    return ",".join(bytes(value).decode("latin-1") for key, value in scope["headers"] if key == name)


def _first_header(scope: Scope, name: bytes) -> str:
    """The first line of a request header: the one Litestar's ``Headers.get`` (and so JWT auth) reads."""
    return next((bytes(value).decode("latin-1") for key, value in scope["headers"] if key == name), "")


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address in a peer or forwarded hop, IPv4-mapped IPv6 unwrapped; None if it is not one."""
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


class TrustedProxies:
    """The peers (``BOOKSTORE_TRUSTED_PROXIES``) whose word about the client is believed: the
    ``X-Forwarded-For`` they add, the ``X-Request-ID`` they pass on."""

    def __init__(self, networks: Sequence[str]) -> None:
        self._networks = [ipaddress.ip_network(network, strict=False) for network in networks]

    def __bool__(self) -> bool:
        return bool(self._networks)

    def trusts(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address | None) -> bool:
        return address is not None and any(address in network for network in self._networks)

    def trusts_peer(self, scope: Scope) -> bool:
        """Whether the request came straight from a trusted proxy."""
        client = scope.get("client")
        return bool(self._networks) and client is not None and self.trusts(_ip(client[0]))


class ClientIdentity:
    """Who a request counts against: the user of a validly signed token, else the client IP.

    The token is only verified (signature, expiry), not looked up: counting must not cost a
    database query. ``X-Forwarded-For`` is believed only when the peer is one of
    ``trusted_proxies``; the client is then the right-most address in it that is not itself a
    trusted proxy.
    """

    def __init__(self, trusted_proxies: Sequence[str], user_of_token: Callable[[str], int | None]) -> None:
        self._trusted = TrustedProxies(trusted_proxies)
        self._user_of_token = user_of_token

    def client_ip(self, scope: Scope) -> str:
        client = scope.get("client")
        peer = client[0] if client else "unknown"
        if not self._trusted or not self._trusted.trusts(_ip(peer)):
            return peer
        address = peer
        for text in reversed(_header(scope, b"x-forwarded-for").split(",")):
            hop = _ip(text.strip())
            if hop is None:
                break
            address = str(hop)
            if not self._trusted.trusts(hop):
                break
        return address

    def key_for(self, scope: Scope, *, client_ip_only: bool) -> str:
        """``user:<id>`` for a request with a valid bearer token (unless ``client_ip_only``),
        else ``ip:<address>``."""
        if not client_ip_only:
            # The same line JWT auth reads, or a second header could move a user's requests to the
            # IP's bucket while the first one authenticates them.
            scheme, _, token = _first_header(scope, b"authorization").partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                user_id = self._user_of_token(token.strip())
                if user_id is not None:
                    return f"user:{user_id}"
        return f"ip:{self.client_ip(scope)}"
