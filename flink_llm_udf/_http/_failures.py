"""What goes wrong in a session, as the package's ``EndpointError``s, with the session's secrets out.

Both clients translate through ``Failures``, so a failure reads the same whichever client ran.
Every message is redacted with the session's own secrets (the values of its ``Authorization``
and other credential headers) BEFORE it is cut to length: a server that quotes the key back (in
its status line, a header, a chunk size) cannot get a piece of it into a row's error or a log
line. Quoted bytes that a library copies from the reply into its messages (aiohttp's parser
shows the offending line) are dropped first: they say nothing the reason does not.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import re
import ssl

from .._errors import (
    EndpointConnectionError,
    EndpointError,
    EndpointTimeoutError,
    MalformedResponseError,
)
from .._secrets import MIN_PIECE, Redactor
from ._request import Headers
from ._tls import verification_failed

#: The longest message a failure carries (after redaction).
MAX_MESSAGE_CHARS = 300
#: A request header whose name holds one of these carries a credential.
_SECRET_NAME_WORDS = ("auth", "key", "token", "secret", "password", "cookie", "credential", "signature")
#: ``b'...'`` / ``b"..."``: reply bytes as Python shows them.
_BYTES_LITERAL = re.compile(r"""(?<!\w)b(['"])(?:\\.|(?!\1).)*\1?""", re.DOTALL)


class ReplyProblem(Exception):
    """A reply the client cannot use. The message may quote the server: it is redacted when shown."""

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


class ReplyTooLarge(ReplyProblem):
    """A reply body over ``max_reply_bytes``: not retried (the next attempt gets the same reply)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=False)


def secrets_of(headers: Headers) -> Redactor:
    """A redactor for the credentials among ``headers``: whole values and their long words.

    ``Authorization: Bearer <key>`` gives the value and the key; a Basic token also its decoded
    ``user:password``. Anything shorter than ``MIN_PIECE`` (``Bearer``, a test key ``abc``) is not
    redacted: replacing every occurrence of a short word would garble the message, not protect it.
    """
    secrets: list[str] = []
    for name, value in headers:
        lowered = name.lower()
        if not any(word in lowered for word in _SECRET_NAME_WORDS):
            continue
        if len(value) >= MIN_PIECE:
            secrets.append(value)
        words = value.split()
        secrets += (word for word in words if len(word) >= MIN_PIECE)
        if len(words) == 2 and words[0].lower() == "basic":
            try:
                decoded = base64.b64decode(words[1], validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                continue
            secrets += (part for part in (decoded, *decoded.split(":", 1)) if len(part) >= MIN_PIECE)
    return Redactor.of(*secrets)


class Failures:
    """Builds one session's errors: ``where`` (host:port) named, its secrets redacted, then cut."""

    def __init__(self, where: str, redactor: Redactor) -> None:
        self.where = where
        self.redactor = redactor

    def text(self, message: str) -> str:
        """``message`` without quoted reply bytes or secrets, then cut to ``MAX_MESSAGE_CHARS``."""
        message = _BYTES_LITERAL.sub("[…]", message)
        if self.redactor:
            message = self.redactor.text(message)
        if len(message) > MAX_MESSAGE_CHARS:
            message = message[: MAX_MESSAGE_CHARS - 1] + "…"
        return message

    def timeout(self, timeout_s: float) -> EndpointTimeoutError:
        return EndpointTimeoutError(f"no complete response within {timeout_s:g} s", retryable=True)

    def connect_timeout(self, timeout_s: float) -> EndpointTimeoutError:
        return EndpointTimeoutError(
            f"could not connect to {self.where} within {timeout_s:g} s", retryable=True
        )

    def connection(self, message: str, *, retryable: bool = True) -> EndpointConnectionError:
        return EndpointConnectionError(self.text(f"connection error: {message}"), retryable=retryable)

    def translated(self, exc: BaseException, timeout_s: float, *, connecting: bool = False) -> BaseException:
        """``exc`` as an ``EndpointError``; cancellation (and other ``BaseException``s) unchanged."""
        if isinstance(exc, EndpointError):
            return exc
        if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
            return self.connect_timeout(timeout_s) if connecting else self.timeout(timeout_s)
        if isinstance(exc, ReplyTooLarge):
            return MalformedResponseError(self.text(str(exc)), retryable=False)
        if isinstance(exc, ReplyProblem):
            return self.connection(str(exc), retryable=exc.retryable)
        if isinstance(exc, ssl.SSLCertVerificationError):
            return verification_failed(self.where, exc, self.text)
        if isinstance(exc, ssl.SSLError):
            return self.connection(f"TLS with {self.where}: {exc.reason or exc}")
        if isinstance(exc, OSError):
            reason = exc.strerror or str(exc) or type(exc).__name__
            return self.connection(f"cannot connect to {self.where}: {reason}" if connecting else reason)
        if isinstance(exc, Exception):
            return self.connection(f"unexpected {type(exc).__name__}: {exc}")
        return exc
