"""Keeping secrets out of messages: masked forms for reprs, redaction for what servers echo back.

A secret is an API key, a password in the endpoint URL, or an ``Authorization`` value built from
them. ``Redactor`` replaces every whole occurrence, and also every piece of eight or more
characters of a secret, so a server that echoes a cut key (or a message we cut ourselves) does
not leak the part it kept. Redact raw bytes before cutting them to a message, then the message.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit, urlunsplit

#: The shortest piece of a secret that is redacted on its own.
MIN_PIECE = 8
_MASK = "***"
_WORD = re.compile(rf"[A-Za-z0-9_\-+/=.~]{{{MIN_PIECE},}}")


def mask_secret(secret: str | None) -> str | None:
    """A form of ``secret`` safe for logs and reprs: ``sk-…abcd`` at most, ``***`` when short."""
    if secret is None:
        return None
    if len(secret) < 20:
        return _MASK
    return f"{secret[:3]}…{secret[-4:]}"


@dataclass(frozen=True, slots=True)
class URLCredentials:
    """An endpoint URL split from its ``user:password@`` part (percent-decoded)."""

    url: str
    username: str | None
    password: str | None


def split_credentials(url: str) -> URLCredentials:
    """``https://u:p@h/v1`` -> ``https://h/v1`` with user ``u`` and password ``p``."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return URLCredentials(url, None, None)
    host = parts.netloc.rpartition("@")[2]
    clean = urlunsplit(parts._replace(netloc=host))
    username = None if parts.username is None else unquote(parts.username)
    password = None if parts.password is None else unquote(parts.password)
    return URLCredentials(clean, username, password)


def mask_url_credentials(url: str) -> str:
    """``https://u:p@h/v1`` -> ``https://u:***@h/v1``; a URL without a password is unchanged."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user, _, _ = parts.netloc.rpartition("@")[0].partition(":")
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{user}:{_MASK}@{host}"))


def basic_authorization(username: str, password: str) -> str:
    """The ``Authorization`` value for HTTP Basic credentials."""
    token = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
    return f"Basic {token}"


@dataclass(frozen=True, slots=True)
class Redactor:
    """Replaces the given secrets (and their pieces) in text and bytes."""

    #: (secret, what stands in its place), longest secret first
    replacements: tuple[tuple[str, str], ...] = field(default=(), repr=False)

    @classmethod
    def of(cls, *secrets: str | None, api_key: str | None = None) -> Redactor:
        """A redactor for the non-empty ``secrets`` (shown as ``***``) and ``api_key`` (``sk-…abcd``)."""
        pairs = {secret: _MASK for secret in secrets if secret}
        if api_key:
            pairs[api_key] = mask_secret(api_key) or _MASK
        return cls(tuple(sorted(pairs.items(), key=lambda pair: len(pair[0]), reverse=True)))

    @property
    def secrets(self) -> tuple[str, ...]:
        return tuple(secret for secret, _ in self.replacements)

    def __bool__(self) -> bool:
        return bool(self.replacements)

    def raw(self, data: bytes) -> bytes:
        """``data`` with every whole secret replaced: cheap enough for a whole reply body."""
        for secret, mask in self.replacements:
            data = data.replace(secret.encode("utf-8", "surrogatepass"), mask.encode())
        return data

    def text(self, message: str) -> str:
        """``message`` with every secret, and every piece of one of ``MIN_PIECE``+ chars, replaced."""
        if not self.replacements:
            return message
        for secret, mask in self.replacements:
            message = re.compile(re.escape(secret), re.IGNORECASE).sub(mask.replace("\\", "\\\\"), message)
        return _WORD.sub(self._mask_pieces, message)

    def _mask_pieces(self, match: re.Match[str]) -> str:
        word = match.group(0)
        for secret in self.secrets:
            word = _mask_common_pieces(word, secret)
        return word


def _mask_common_pieces(word: str, secret: str) -> str:
    """``word`` with each run of ``MIN_PIECE``+ characters that also occurs in ``secret`` masked
    (ignoring case: a server may change the case of what it quotes)."""
    if len(secret) < MIN_PIECE:
        return word
    folded, secret = word.lower(), secret.lower()
    out: list[str] = []
    start = 0
    i = 0
    while i <= len(word) - MIN_PIECE:
        if folded[i : i + MIN_PIECE] not in secret:
            i += 1
            continue
        end = i + MIN_PIECE
        while end < len(word) and folded[i : end + 1] in secret:
            end += 1
        out.append(word[start:i])
        out.append(_MASK)
        start = i = end
    out.append(word[start:])
    return "".join(out)
