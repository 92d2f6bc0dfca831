"""TLS for both clients: whom to trust, and what a failed certificate check tells the user.

The trust store is the system's (``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` honoured, as OpenSSL
does) plus, when given, ``tls_ca_file``: a PEM bundle of the CA certificates of a private CA.
A certificate the client cannot verify, or one for another host name, is not a network hiccup:
the next attempt fails the same way, so it is not retried, and the message says what to change.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable

from .._errors import ConfigurationError, EndpointConnectionError

#: What to do when the server's certificate is not trusted, in every such message.
REMEDY = (
    "trust the server's CA with tls_ca_file (job parameter ai.tls-ca-file) or SSL_CERT_FILE "
    "(a PEM bundle), or use the host name the certificate names; not retried"
)


def client_context(tls_ca_file: str | None = None) -> ssl.SSLContext:
    """A verifying client context: the system's CAs plus those of ``tls_ca_file``.

    Raises ``ConfigurationError`` naming ``tls_ca_file`` when the file cannot be read or holds
    no PEM certificate: at session open, not at the first request.
    """
    context = ssl.create_default_context()
    if tls_ca_file is not None:
        try:
            context.load_verify_locations(cafile=tls_ca_file)
        except ssl.SSLError as exc:
            raise ConfigurationError(
                f"tls_ca_file={tls_ca_file!r} holds no usable CA certificate ({exc.reason or exc}): "
                "it must be a PEM bundle (-----BEGIN CERTIFICATE-----)"
            ) from None
        except (OSError, ValueError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            raise ConfigurationError(f"tls_ca_file={tls_ca_file!r} cannot be read: {reason}") from None
    return context


def verification_failed(
    where: str, exc: ssl.SSLCertVerificationError, text: Callable[[str], str]
) -> EndpointConnectionError:
    """The error for a certificate ``where`` presented that did not verify (``text`` redacts, cuts)."""
    detail = exc.verify_message or exc.reason or str(exc)
    return EndpointConnectionError(
        text(f"connection error: TLS certificate verification failed for {where}: {detail}; {REMEDY}"),
        retryable=False,
    )
