"""The endpoint a session talks to, read once from its URL with yarl: what both clients send.

yarl percent-encodes the path and query (``/v 1?x=a b`` -> ``/v%201?x=a+b``) and IDNA-encodes
the host (``bücher.example`` -> ``xn--bcher-kva.example``), exactly as aiohttp (which uses yarl
too) does, so the two clients put the same request line and ``Host`` on the wire. URL
credentials (``user:password@``) are refused, never printed: they belong in a header, which
``_wire.resolve_call`` builds from them before the URL reaches a session.
"""

from __future__ import annotations

from dataclasses import dataclass

from yarl import URL

from .._errors import InvalidOptionError


@dataclass(frozen=True, slots=True)
class Endpoint:
    """An http(s) endpoint: host (ASCII, IDNA), port, request target and ``Host`` value."""

    url: str  # normalised, without credentials or fragment: what aiohttp is given
    tls: bool
    host: str  # ASCII: IDNA-encoded name or IP address (IPv6 without brackets)
    port: int
    target: str  # the request target: percent-encoded path and query
    authority: str  # the Host header: host, bracketed when IPv6, with the port unless default

    @classmethod
    def parse(cls, url: str) -> Endpoint:
        """The endpoint of ``url``; ``InvalidOptionError`` (never echoing credentials) if unusable."""
        try:
            parsed = URL(url)
            scheme, host, port = parsed.scheme, parsed.raw_host, parsed.port
        except (ValueError, TypeError) as exc:
            raise InvalidOptionError(f"the endpoint URL is not valid: {exc}") from None
        if scheme not in ("http", "https") or not host or port is None:
            shown = f"{scheme}://{host or ''}" if scheme else "a URL without scheme"
            raise InvalidOptionError(f"endpoint URL must be http(s)://host/...: got {shown}")
        if parsed.raw_user is not None or parsed.raw_password is not None:
            raise InvalidOptionError(
                "the endpoint URL holds credentials (user:password@host): the HTTP client does not "
                "send them; give them as an Authorization header"
            )
        tls = scheme == "https"
        name = f"[{host}]" if ":" in host else host
        authority = name if port == (443 if tls else 80) else f"{name}:{port}"
        target = parsed.raw_path_qs or "/"
        clean = str(parsed.with_fragment(None))
        return cls(clean, tls, host, port, target, authority)

    @property
    def where(self) -> str:
        """``host:port`` as messages name the endpoint (IPv6 in brackets, the port always)."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"
