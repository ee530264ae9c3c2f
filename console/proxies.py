"""The real client address behind a TLS proxy: HOTLINE_TRUSTED_PROXIES wires werkzeug's ProxyFix.

A count trusts that many proxies in front of the app (ProxyFix reads X-Forwarded-For/-Proto/-Host);
a list of addresses or networks trusts the forwarded headers only when the connection comes from one of
them, so that a client reaching the app directly cannot name its own address.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from infra.config import ProxyNetwork

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment


def trust_proxies(app: Flask, setting: int | tuple[ProxyNetwork, ...]) -> None:
    """Wrap the app for the setting: a count (0: none) or the proxies' addresses and networks."""
    if isinstance(setting, int):
        if setting:
            n = setting
            app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=n)  # type: ignore[method-assign]
    elif setting:
        app.wsgi_app = TrustedProxies(app.wsgi_app, setting)  # type: ignore[method-assign]


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        return None


def _last(environ: WSGIEnvironment, key: str) -> str:
    return str(environ.get(key, "")).rsplit(",", 1)[-1].strip()


class TrustedProxies:
    """X-Forwarded-For read from the right, past every hop that is one of the trusted proxies."""

    def __init__(self, app: WSGIApplication, networks: Iterable[ProxyNetwork]) -> None:
        self.app, self.networks = app, tuple(networks)

    def trusted(self, text: str) -> bool:
        address = _address(text)
        return address is not None and any(address in net for net in self.networks)

    def client(self, peer: str, forwarded_for: str) -> str:
        """The first hop, from the right, that is not a trusted proxy (the peer if none is named)."""
        client = peer
        for hop in reversed([h.strip() for h in forwarded_for.split(",") if h.strip()]):
            if _address(hop) is None:
                break  # junk in the chain: keep the last hop a trusted proxy vouched for
            client = hop
            if not self.trusted(hop):
                break
        return client

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Any:
        peer = str(environ.get("REMOTE_ADDR", ""))
        if self.trusted(peer):
            environ["REMOTE_ADDR"] = self.client(peer, str(environ.get("HTTP_X_FORWARDED_FOR", "")))
            proto = _last(environ, "HTTP_X_FORWARDED_PROTO").lower()
            if proto in ("http", "https"):
                environ["wsgi.url_scheme"] = proto
            host = _last(environ, "HTTP_X_FORWARDED_HOST")
            if host:
                environ["HTTP_HOST"] = host
        return self.app(environ, start_response)
