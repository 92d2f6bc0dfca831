"""Simulator options: one frozen dataclass, its validation, and the matching CLI flags.

Every field of :class:`SimulatorConfig` is also a command-line flag of
``python -m flink_llm_udf.simulator`` (``latency_ms`` -> ``--latency-ms``), so a config can
be turned into argv (:func:`config_to_argv`, used by ``SimulatorProcess``) and back
(:func:`config_from_argv`). All fields except ``host`` and ``port`` can be changed while the
server runs (``POST /sim/config`` or ``SimulatorThread.update``).

Two kinds of request limits exist. ``rate_per_minute`` and ``max_in_flight`` are the old,
server-wide ones: a fixed 60 s window counting requests only, and a cap on requests in flight,
with no ``x-ratelimit-*`` headers. The ``quota_*`` fields behave like a hosted API's quotas
(see :mod:`._limits`): per API key, requests and tokens per minute refilling continuously, a
cap on each key's requests in flight, the ``x-ratelimit-*`` headers on every reply and 429s
worded like OpenAI's. With no quota set the hot path skips all of it.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from .._errors import InvalidOptionError, InvalidOptionTypeError

__all__ = [
    "API_KEY_ENV",
    "CONTENT_FAULT_FIELDS",
    "DEFAULT_EMBEDDING_DIMENSIONS",
    "DEFAULT_QUOTA_MAX_TOKENS",
    "FAULT_FIELDS",
    "RUNTIME_FIELDS",
    "SimulatorConfig",
    "build_parser",
    "config_from_argv",
    "config_to_argv",
]

DEFAULT_EMBEDDING_DIMENSIONS = 16

#: Completion tokens per choice counted against ``quota_tpm`` for a chat request without
#: ``max_tokens``: a short answer's worth, as OpenAI cannot know the length in advance either.
DEFAULT_QUOTA_MAX_TOKENS = 16

#: Read by the CLI when ``--api-key`` is not given, so a key need not appear in ``ps`` output.
API_KEY_ENV = "FLINK_LLM_SIMULATOR_API_KEY"

#: Random-fault probabilities, in the order they are tried against one uniform draw.
FAULT_FIELDS: tuple[str, ...] = (
    "fault_500",
    "fault_503",
    "fault_429",
    "fault_timeout",
    "fault_reset",
    "fault_malformed",
    "fault_invalid_json",
    "fault_schema_violation",
)

#: The random faults that only apply to structured (``json_schema``/``json_object``) requests.
CONTENT_FAULT_FIELDS: tuple[str, ...] = ("fault_invalid_json", "fault_schema_violation")

_HELP: dict[str, str] = {
    "host": "interface to bind; keep the loopback default unless you know why",
    "port": "TCP port; 0 picks a free ephemeral port",
    "models": "model names listed by GET /v1/models (any name is accepted in requests)",
    "latency_ms": "fixed latency added to every API request",
    "latency_jitter_ms": "uniform +/- jitter around latency_ms",
    "tail_fraction": "fraction of requests that take tail_multiplier x latency",
    "tail_multiplier": "latency multiplier for the tail fraction",
    "api_key": "require 'Authorization: Bearer <key>' on /v1 endpoints",
    "context_window": "reject prompts longer than this many cl100k tokens with 400",
    "max_in_flight": "answer 429 when this many requests are already in flight",
    "rate_per_minute": (
        "answer 429 after this many requests in the current fixed 60 s window (server-wide, requests "
        "only, no x-ratelimit headers; see --quota-rpm for an API-like quota)"
    ),
    "retry_after_s": "Retry-After seconds on capacity (max_in_flight, quota_max_concurrent) and random 429s",
    "retry_after_ms_header": "also send 'retry-after-ms' on 429 answers",
    "fault_500": "probability of answering 500",
    "fault_503": "probability of answering 503",
    "fault_429": "probability of answering 429",
    "fault_timeout": "probability of hanging timeout_hang_s before answering",
    "fault_reset": "probability of dropping the connection without an answer",
    "fault_malformed": "probability of a 200 answer that is not a valid completion",
    "fault_invalid_json": (
        "probability that a json_schema/json_object request's reply content is not JSON "
        "(other requests are not affected)"
    ),
    "fault_schema_violation": (
        "probability that a json_schema/json_object request's reply content is JSON that violates "
        "the schema (other requests are not affected)"
    ),
    "timeout_hang_s": "how long a timeout fault or [sim:hang] waits",
    "seed": "seed of the fault/latency random generator (runs are repeatable)",
    "record_requests": "keep received requests for GET /sim/stats?requests=1",
    "record_limit": "keep at most this many recorded requests (the first ones)",
    "embedding_dimensions": "embedding length when a request gives no 'dimensions'",
    "json_schema_support": (
        "answer response_format json_schema with a reply matching the schema; with "
        "--no-json-schema-support refuse it with OpenAI's 400 (a model without structured outputs)"
    ),
    "quota_rpm": (
        "requests per minute per API key (Authorization header; requests without one share a bucket), "
        "refilling continuously; a request over it gets an OpenAI-like 429 and uses nothing"
    ),
    "quota_tpm": (
        "tokens per minute per API key, refilling continuously; a chat request costs its prompt "
        "words plus n x max_tokens (or --quota-default-max-tokens), an embeddings request its "
        "input words"
    ),
    "quota_max_concurrent": "answer 429 at once when the request's API key already has this many in flight",
    "quota_headers": "send x-ratelimit-* headers for the quota dimensions set (quota_rpm, quota_tpm)",
    "quota_default_max_tokens": "completion tokens per choice counted against quota_tpm without max_tokens",
    "quota_window_s": (
        "seconds the quotas count over: 60 like a hosted API's minute; shorter scales a minute down "
        "(quota_rpm requests per that many seconds) so a test can exhaust a quota quickly"
    ),
}


@dataclass(frozen=True, slots=True)
class SimulatorConfig:
    """Everything the simulator can be told; validated on construction.

    Probabilities are in [0, 1]; durations are non-negative; ``None`` disables an optional
    limit. A bad value raises ``InvalidOptionError`` (a ``ValueError``), a bad type
    ``InvalidOptionTypeError`` (a ``TypeError``). Replies never depend on these options,
    only faults, limits, timing and whether ``json_schema`` is accepted do. ``repr`` leaves
    the API key out.
    """

    host: str = "127.0.0.1"
    port: int = 0
    models: tuple[str, ...] = ("sim-model",)
    latency_ms: float = 0.0
    latency_jitter_ms: float = 0.0
    tail_fraction: float = 0.0
    tail_multiplier: float = 10.0
    api_key: str | None = field(default=None, repr=False)
    context_window: int | None = None
    max_in_flight: int | None = None
    rate_per_minute: int | None = None
    retry_after_s: float = 1.0
    retry_after_ms_header: bool = False
    fault_500: float = 0.0
    fault_503: float = 0.0
    fault_429: float = 0.0
    fault_timeout: float = 0.0
    fault_reset: float = 0.0
    fault_malformed: float = 0.0
    fault_invalid_json: float = 0.0
    fault_schema_violation: float = 0.0
    timeout_hang_s: float = 30.0
    seed: int = 0
    record_requests: bool = False
    record_limit: int = 10_000
    embedding_dimensions: int = DEFAULT_EMBEDDING_DIMENSIONS
    json_schema_support: bool = True
    quota_rpm: int | None = None
    quota_tpm: int | None = None
    quota_max_concurrent: int | None = None
    quota_headers: bool = True
    quota_default_max_tokens: int = DEFAULT_QUOTA_MAX_TOKENS
    quota_window_s: float = 60.0

    def __post_init__(self) -> None:
        if isinstance(self.models, str) or not isinstance(self.models, Sequence):
            raise InvalidOptionTypeError(f"models must be a list of names, got {self.models!r}")
        object.__setattr__(self, "models", tuple(self.models))
        if not self.models or not all(isinstance(m, str) and m for m in self.models):
            raise InvalidOptionError(f"models must be non-empty names, got {self.models!r}")
        if not isinstance(self.host, str) or not self.host:
            raise InvalidOptionError(f"host must be a non-empty string, got {self.host!r}")
        if self.api_key is not None and (not isinstance(self.api_key, str) or not self.api_key):
            raise InvalidOptionError("api_key must be a non-empty string or None")
        _check_int("port", self.port, 0, 65535)
        _check_int("seed", self.seed, None, None)
        _check_int("record_limit", self.record_limit, 0, None)
        _check_int("embedding_dimensions", self.embedding_dimensions, 1, 65536)
        _check_int("quota_default_max_tokens", self.quota_default_max_tokens, 0, None)
        for name in (
            "context_window",
            "max_in_flight",
            "rate_per_minute",
            "quota_rpm",
            "quota_tpm",
            "quota_max_concurrent",
        ):
            if getattr(self, name) is not None:
                _check_int(name, getattr(self, name), 1, None)
        for name in ("latency_ms", "latency_jitter_ms", "retry_after_s", "timeout_hang_s"):
            _check_number(name, getattr(self, name), 0.0, None)
        _check_number("quota_window_s", self.quota_window_s, 0.001, None)
        _check_number("tail_multiplier", self.tail_multiplier, 0.0, None)
        for name in ("tail_fraction", *FAULT_FIELDS):
            _check_number(name, getattr(self, name), 0.0, 1.0)
        for name in ("retry_after_ms_header", "record_requests", "quota_headers", "json_schema_support"):
            if not isinstance(getattr(self, name), bool):
                raise InvalidOptionTypeError(f"{name} must be true or false, got {getattr(self, name)!r}")

    def with_changes(self, changes: Mapping[str, Any]) -> SimulatorConfig:
        """Return a copy with ``changes`` applied; only runtime-changeable fields are allowed."""
        unknown = sorted(set(changes) - set(RUNTIME_FIELDS))
        if unknown:
            raise InvalidOptionError(
                f"cannot change {', '.join(unknown)} at runtime; changeable: {', '.join(RUNTIME_FIELDS)}"
            )
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready view with the API key hidden (it is never echoed)."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["models"] = list(self.models)
        out["api_key"] = None if self.api_key is None else "***"
        return out

    @property
    def has_random_faults(self) -> bool:
        """True when any random fault rate is non-zero (the hot path skips the draw otherwise)."""
        return any(getattr(self, name) > 0.0 for name in FAULT_FIELDS)

    @property
    def has_quota(self) -> bool:
        """True when any per-key quota is set (the hot path skips quota work otherwise)."""
        return (
            self.quota_rpm is not None or self.quota_tpm is not None or self.quota_max_concurrent is not None
        )


RUNTIME_FIELDS: tuple[str, ...] = tuple(
    f.name for f in fields(SimulatorConfig) if f.name not in ("host", "port")
)


def _check_int(name: str, value: Any, low: int | None, high: int | None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidOptionTypeError(f"{name} must be an integer, got {value!r}")
    if (low is not None and value < low) or (high is not None and value > high):
        raise InvalidOptionError(f"{name} must be in [{low}, {high}], got {value!r}")


def _check_number(name: str, value: Any, low: float | None, high: float | None) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidOptionTypeError(f"{name} must be a finite number, got {value!r}")
    if (low is not None and value < low) or (high is not None and value > high):
        raise InvalidOptionError(f"{name} must be in [{low}, {high}], got {value!r}")


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def build_parser(prog: str = "python -m flink_llm_udf.simulator") -> argparse.ArgumentParser:
    """CLI parser whose flags mirror :class:`SimulatorConfig` fields one to one."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description=(
            "OpenAI-compatible HTTP server with deterministic replies, fault injection and per-key quotas."
        ),
    )
    defaults = SimulatorConfig()
    for f in fields(SimulatorConfig):
        default = getattr(defaults, f.name)
        help_text = f"{_HELP[f.name]} (default: {default!r})"
        if f.name == "models":
            parser.add_argument(_flag(f.name), nargs="+", metavar="NAME", help=help_text)
        elif isinstance(default, bool):
            parser.add_argument(_flag(f.name), action=argparse.BooleanOptionalAction, help=help_text)
        else:
            kind = f.type if isinstance(f.type, str) else str(f.type)
            parse = int if kind.startswith("int") else float if kind.startswith("float") else str
            metavar = None if parse is str else "N"
            parser.add_argument(_flag(f.name), type=parse, metavar=metavar, help=help_text)
    parser.add_argument("--port-file", help="write the bound port to this file once listening")
    parser.add_argument("--log-level", default="WARNING", help="logging level (default: WARNING)")
    parser.set_defaults(**{f.name: None for f in fields(SimulatorConfig)})
    return parser


def config_from_argv(args: argparse.Namespace) -> SimulatorConfig:
    """Build a config from parsed CLI arguments; flags not given keep the dataclass default."""
    given = {
        f.name: getattr(args, f.name)
        for f in fields(SimulatorConfig)
        if getattr(args, f.name, None) is not None
    }
    return SimulatorConfig(**given)


def config_to_argv(config: SimulatorConfig, *, include_api_key: bool = True) -> list[str]:
    """CLI flags reproducing ``config`` (only fields that differ from the defaults)."""
    defaults = SimulatorConfig()
    argv: list[str] = []
    for f in fields(SimulatorConfig):
        value = getattr(config, f.name)
        if value == getattr(defaults, f.name) or (f.name == "api_key" and not include_api_key):
            continue
        if f.name == "models":
            argv += [_flag(f.name), *value]
        elif isinstance(value, bool):
            argv.append(_flag(f.name) if value else "--no-" + f.name.replace("_", "-"))
        else:
            argv += [_flag(f.name), repr(value) if isinstance(value, float) else str(value)]
    return argv
