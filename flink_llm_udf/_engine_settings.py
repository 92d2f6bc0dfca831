"""``EngineSettings``: how the engine calls the endpoint, beyond the provider's options.

Each field is also a job parameter (``ai.<field>`` with ``-`` for ``_`` and no ``_s`` suffix;
``flink_llm_udf.job_parameters`` derives the keys from the fields).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ._errors import InvalidOptionError
from ._http import HTTP_CLIENTS, HTTPClient

ContextTokenizer = Literal["tiktoken", "endpoint"]
CONTEXT_TOKENIZERS: tuple[ContextTokenizer, ...] = ("tiktoken", "endpoint")


@dataclass(frozen=True, slots=True)
class EngineSettings:
    """How the engine calls the endpoint, beyond the provider's options.

    ``max_concurrency`` bounds requests in flight per engine (per Flink subtask);
    ``request_timeout_s`` bounds one request; ``row_deadline_s`` bounds a row's total time across
    retries, counted from its first attempt (None: no bound); ``embedding_rows_per_request`` sends
    up to that many rows in one embeddings request on the batch path; ``batch_deadline_s`` bounds
    a whole batch (a Pandas UDF's Arrow batch, a ``run_batch`` call): rows still unfinished then
    end like exhausted rows (NULL and an error under IGNORE, ``RowFailedError`` under FAILOVER),
    so a batch never waits longer than that for a struggling endpoint (None: no bound);
    ``http_client`` is "auto" (the built-in HTTP/1.1 client, or the one ``FLINK_LLM_HTTP_CLIENT``
    names, and aiohttp whenever the environment sets a proxy or netrc credentials for the
    endpoint), "builtin" or "aiohttp" (that client, always); ``max_reply_bytes`` caps a reply's
    body, before and after decompression (a larger reply is that row's error, not retried);
    ``tls_ca_file`` names a PEM bundle of CA certificates to trust besides the system's (a private
    CA; ``SSL_CERT_FILE`` works too), read where the engine opens; ``context_tokenizer`` says who
    counts tokens for the provider's ``max_context_size``: "tiktoken" (offline, OpenAI's
    encodings) or "endpoint" (the server's own ``/tokenize``, as llama.cpp and vLLM offer; falls
    back to tiktoken, with a warning, where the server has none).

    ``requests_per_minute`` and ``tokens_per_minute`` are the endpoint's quota for the whole job
    (None: none configured); each Flink subtask takes its share, so together they stay within
    it. A request's tokens are estimated before it is sent (the prompt counted with tiktoken,
    plus ``max_tokens`` or ``completion_tokens_estimate``) and corrected by the reply's usage.
    ``adaptive_concurrency`` halves the requests in flight on a 429 or a timeout and grows them
    back by one per window of successes, up to ``max_concurrency``; ``rate_limit_headers`` lets
    the server's ``x-ratelimit-*`` headers set a budget none is configured for and hold requests
    while the key has nothing left.
    """

    max_concurrency: int = 16
    request_timeout_s: float = 60.0
    row_deadline_s: float | None = 300.0
    embedding_rows_per_request: int = 1
    batch_deadline_s: float | None = None
    http_client: HTTPClient = "auto"
    max_reply_bytes: int = 64 * 1024 * 1024
    tls_ca_file: str | None = None
    context_tokenizer: ContextTokenizer = "tiktoken"
    requests_per_minute: float | None = None
    tokens_per_minute: float | None = None
    completion_tokens_estimate: int = 256
    adaptive_concurrency: bool = True
    rate_limit_headers: bool = True

    def __post_init__(self) -> None:
        for name in ("requests_per_minute", "tokens_per_minute"):
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < float("inf"):
                raise InvalidOptionError(
                    f"{name}={value!r} is not allowed: must be a number > 0 (per minute)"
                )
        for name in ("adaptive_concurrency", "rate_limit_headers"):
            if not isinstance(getattr(self, name), bool):
                raise InvalidOptionError(
                    f"{name}={getattr(self, name)!r} is not allowed: must be True or False"
                )
        if self.http_client not in HTTP_CLIENTS:
            raise InvalidOptionError(
                f"http_client={self.http_client!r} is not allowed: must be one of {', '.join(HTTP_CLIENTS)}"
            )
        if self.context_tokenizer not in CONTEXT_TOKENIZERS:
            raise InvalidOptionError(
                f"context_tokenizer={self.context_tokenizer!r} is not allowed: "
                f"must be one of {', '.join(CONTEXT_TOKENIZERS)}"
            )
        if self.tls_ca_file is not None and (not isinstance(self.tls_ca_file, str) or not self.tls_ca_file):
            raise InvalidOptionError(f"tls_ca_file={self.tls_ca_file!r} is not allowed: must be a file path")
        for name in (
            "max_concurrency",
            "embedding_rows_per_request",
            "max_reply_bytes",
            "completion_tokens_estimate",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidOptionError(f"{name}={value!r} is not allowed: must be an int >= 1")
        for name in ("request_timeout_s", "row_deadline_s", "batch_deadline_s"):
            value = getattr(self, name)
            if value is None and name != "request_timeout_s":
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise InvalidOptionError(f"{name}={value!r} is not allowed: must be a number of seconds > 0")
