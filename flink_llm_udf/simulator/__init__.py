"""OpenAI-compatible HTTP server with deterministic replies, fault injection and quotas.

Used by demos, the package's tests and throughput benchmarks. Replies depend only on the
request (see :mod:`._replies` for the format), so tests can compute every row's expected
answer with :func:`expected_chat_reply` / :func:`expected_embedding`; failures are injected
by rate (seeded, see :mod:`._faults`) or by ``[sim:...]`` directives in a row's text (see
:mod:`._directives`).

Structured output: a ``json_schema`` request (or a ``json_object`` one whose system prompt has
a ``JSON schema:`` line followed by the schema) is answered with JSON that validates against the
schema, computed by :func:`structured_reply` from the schema and the row (rules in
:mod:`._structured_replies`). ``fault_invalid_json`` / ``fault_schema_violation`` and the
directives ``[sim:invalid_json]`` / ``[sim:schema_violation]`` (with ``fail=K``: only the first
K attempts) spoil such replies; ``json_schema_support=False`` refuses ``json_schema`` with
OpenAI's 400, so a client's fallback to ``json_object`` can be tested::

    with SimulatorThread(json_schema_support=False, fault_schema_violation=0.1) as sim:
        ...

Quotas like a hosted API's (``quota_rpm``, ``quota_tpm``, ``quota_max_concurrent``, see
:mod:`._limits`) are kept per API key: they refill continuously over a minute, every reply
carries OpenAI's ``x-ratelimit-*`` headers, and a request over a quota gets OpenAI's 429 body
(``rate_limit_exceeded``) with ``Retry-After`` and ``retry-after-ms`` and uses nothing. A test
computes what a request is charged with :func:`chat_quota_tokens` /
:func:`embeddings_quota_tokens` and finds its key in ``stats()["quota_keys"]`` under
:func:`quota_key_label`::

    with SimulatorThread(quota_rpm=600, quota_tpm=60_000) as sim:
        ...  # replies carry x-ratelimit-remaining-requests, -tokens, ...
        assert sim.stats()["rate_limited_requests"] == 0

Run it with ``python -m flink_llm_udf.simulator --help`` (or ``flink-llm simulator``), or
from Python, pointing any OpenAI-compatible client at ``base_url``::

    with SimulatorThread(latency_ms=5, fault_503=0.1) as sim:
        ...  # send requests to sim.base_url ("http://127.0.0.1:PORT/v1")
        assert sim.stats()["faults"].get("fault_503", 0) > 0

Use :class:`SimulatorProcess` instead when the client must not share this process's GIL.
"""

from __future__ import annotations

from ._background import SimulatorError, SimulatorProcess, SimulatorThread
from ._behaviour import (
    DEFAULT_EMBEDDING_DIMENSIONS,
    DEFAULT_QUOTA_MAX_TOKENS,
    RUNTIME_FIELDS,
    SimulatorConfig,
)
from ._bodies import JSON_SCHEMA_UNSUPPORTED
from ._cli import main
from ._directives import Directive, DirectiveError, parse_directive
from ._limits import chat_quota_tokens, embeddings_quota_tokens, quota_key_label
from ._replies import (
    ChatChoice,
    content_text,
    count_words,
    expected_chat_choice,
    expected_chat_reply,
    expected_embedding,
    expected_prompt_tokens,
    first_user_text,
)
from ._server import RunningSimulator, SimulatorServer, start_simulator
from ._structured_replies import (
    INVALID_JSON_REPLY,
    NO_VIOLATION,
    SCHEMA_MARKER,
    SchemaError,
    schema_violation,
    stable_hash,
    structured_reply,
)

__all__ = [
    "DEFAULT_EMBEDDING_DIMENSIONS",
    "DEFAULT_QUOTA_MAX_TOKENS",
    "INVALID_JSON_REPLY",
    "JSON_SCHEMA_UNSUPPORTED",
    "NO_VIOLATION",
    "RUNTIME_FIELDS",
    "SCHEMA_MARKER",
    "ChatChoice",
    "Directive",
    "DirectiveError",
    "RunningSimulator",
    "SchemaError",
    "SimulatorConfig",
    "SimulatorError",
    "SimulatorProcess",
    "SimulatorServer",
    "SimulatorThread",
    "chat_quota_tokens",
    "content_text",
    "count_words",
    "embeddings_quota_tokens",
    "expected_chat_choice",
    "expected_chat_reply",
    "expected_embedding",
    "expected_prompt_tokens",
    "first_user_text",
    "main",
    "parse_directive",
    "quota_key_label",
    "schema_violation",
    "stable_hash",
    "start_simulator",
    "structured_reply",
]
