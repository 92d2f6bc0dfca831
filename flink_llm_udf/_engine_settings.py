"""``EngineSettings``: how the engine calls the endpoint, beyond the provider's options.

Each field is also a job parameter (``ai.<field>`` with ``-`` for ``_`` and no ``_s`` suffix;
``flink_llm_udf.job_parameters`` derives the keys from the fields).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from ._errors import InvalidOptionError
from ._http import HTTP_CLIENTS, HTTPClient

StructuredOutput = Literal["auto", "json_schema", "json_object"]
STRUCTURED_OUTPUTS: tuple[StructuredOutput, ...] = ("auto", "json_schema", "json_object")
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

    ``prompt_template`` makes each row's prompt from a template with ``{field}`` placeholders
    filled from the row's fields (a mapping, or a JSON object such as SQL's ``JSON_OBJECT``; a
    template of ``{text}`` alone takes the row's text); a NULL field makes the prompt NULL, so the
    row is answered NULL without a request. ``structured_output`` says how a schema is asked for:
    "json_schema" (``response_format`` with the schema, strict where OpenAI allows), "json_object"
    (the schema in the system prompt) or "auto" (json_schema, then json_object for good once the
    server refuses it); a reply that does not match is asked again ``invalid_output_retries`` times.

    Paying once: ``dedup`` sends identical requests in flight at the same time once and shares
    the answer; ``cache`` keeps successful answers ("memory": an LRU of ``cache_max_entries``
    per process, shared by its engines; a ``redis://`` / ``rediss://`` URL: a Redis store shared
    by every subtask, job and rerun, its password in the URL or in ``cache_password_file``) for
    ``cache_ttl_s`` (None: no expiry); a cached or shared answer of a request with
    temperature > 0 or n > 1 is one sample.
    ``prices`` gives prices per million prompt/completion tokens per model
    (``"gpt-4o-mini=0.15/0.60;*=1/2"`` or a mapping), so each row carries its cost;
    ``token_budget`` and ``cost_budget`` bound what a function spends in the whole job, all its
    subtasks together (each takes its share, like the quotas); a job with several functions
    gives each its own (divide yours among them: ``ai.<name>.token-budget``). Once spent, rows
    fail (FAILOVER) or end NULL with a "budget spent" error.
    ``embedding_pack_wait_s`` is how long the row path (async SQL, DataStream) holds an
    embeddings row to pack it with others, up to ``embedding_rows_per_request`` per request
    (None: only rows that arrive together).
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
    prompt_template: str | None = None
    structured_output: StructuredOutput = "auto"
    invalid_output_retries: int = 2
    dedup: bool = True
    cache: str | None = None
    cache_ttl_s: float | None = 86400.0
    cache_max_entries: int = 100_000
    cache_password_file: str | None = None
    prices: str | Mapping[str, Any] | None = field(default=None, metadata={"job_parameter": "text"})
    token_budget: int | None = field(default=None, metadata={"job_parameter": "budget"})
    cost_budget: float | None = field(default=None, metadata={"job_parameter": "budget"})
    embedding_pack_wait_s: float | None = 0.005

    def __repr__(self) -> str:
        """Every field, a password in the cache URL masked."""
        from ._result_cache import show_cache_url

        shown = []
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            text = show_cache_url(value) if name == "cache" and isinstance(value, str) else repr(value)
            shown.append(f"{name}={text}")
        return f"EngineSettings({', '.join(shown)})"

    def __post_init__(self) -> None:
        for name in ("requests_per_minute", "tokens_per_minute"):
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < float("inf"):
                raise InvalidOptionError(
                    f"{name}={value!r} is not allowed: must be a number > 0 (per minute)"
                )
        for name in ("adaptive_concurrency", "rate_limit_headers", "dedup"):
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
            "cache_max_entries",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidOptionError(f"{name}={value!r} is not allowed: must be an int >= 1")
        for name in ("request_timeout_s", "row_deadline_s", "batch_deadline_s", "cache_ttl_s"):
            value = getattr(self, name)
            if value is None and name != "request_timeout_s":
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise InvalidOptionError(f"{name}={value!r} is not allowed: must be a number of seconds > 0")
        self._check_structured()
        self._check_spending()

    def _check_structured(self) -> None:
        """The prompt template and structured output fields."""
        from ._templates import PromptTemplate

        if self.prompt_template is not None:
            if not isinstance(self.prompt_template, str):
                raise InvalidOptionError(
                    f"prompt_template={self.prompt_template!r} is not allowed: must be a string"
                )
            PromptTemplate.parse(self.prompt_template)
        if self.structured_output not in STRUCTURED_OUTPUTS:
            raise InvalidOptionError(
                f"structured_output={self.structured_output!r} is not allowed: "
                f"must be one of {', '.join(STRUCTURED_OUTPUTS)}"
            )
        retries = self.invalid_output_retries
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise InvalidOptionError(
                f"invalid_output_retries={retries!r} is not allowed: must be an int >= 0"
            )

    def _check_spending(self) -> None:
        """The pay-once fields: cache, prices, budgets, embeddings packing."""
        from ._result_cache import validate_cache_spec
        from ._spend import validate_prices

        validate_cache_spec(self.cache)
        if self.cache_password_file is not None and (
            not isinstance(self.cache_password_file, str) or not self.cache_password_file
        ):
            raise InvalidOptionError(
                f"cache_password_file={self.cache_password_file!r} is not allowed: must be a file path"
            )
        if self.prices is not None:
            validate_prices(self.prices)
        budget = self.token_budget
        if budget is not None and (isinstance(budget, bool) or not isinstance(budget, int) or budget < 1):
            raise InvalidOptionError(f"token_budget={budget!r} is not allowed: must be an int >= 1 (tokens)")
        cost = self.cost_budget
        if cost is not None:
            if isinstance(cost, bool) or not isinstance(cost, (int, float)) or not 0 < cost < float("inf"):
                raise InvalidOptionError(f"cost_budget={cost!r} is not allowed: must be a number > 0")
            if self.prices is None:
                raise InvalidOptionError(
                    f"cost_budget={cost!r} is not allowed: it needs prices (per million tokens, per model)"
                )
        wait = self.embedding_pack_wait_s
        if wait is not None and (
            isinstance(wait, bool) or not isinstance(wait, (int, float)) or not wait >= 0
        ):
            raise InvalidOptionError(
                f"embedding_pack_wait_s={wait!r} is not allowed: must be a number of seconds >= 0"
            )
