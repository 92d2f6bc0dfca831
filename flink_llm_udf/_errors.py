"""The package's exception tree; every error we raise derives from ``FlinkLLMError``.

    FlinkLLMError
    ├── InvalidOptionError (ValueError)        an option has a wrong value
    ├── InvalidOptionTypeError (TypeError)     an option has a wrong type
    ├── ConfigurationError                     the call cannot be set up at open (no endpoint, ...)
    │   └── TokenizerUnavailableError          no tiktoken encoding can be loaded offline
    ├── EndpointError                          one request failed (kept on the row, not raised)
    │   ├── EndpointStatusError                the endpoint answered an HTTP error status
    │   ├── EndpointConnectionError            connect/reset/disconnect
    │   ├── EndpointTimeoutError               the request outlived its timeout
    │   └── MalformedResponseError             a 2xx body that is not the JSON the API promises
    │       └── InvalidReplyError                  an answer that does not match the requested schema
    ├── RowFailedError                         a row failed under FAILOVER: names the row and cause
    ├── ClusterError (tools.cluster.errors)    the standalone cluster cannot start, be used or stop
    ├── SqlRunnerError (tools.sql_file.execute) a statement of a .sql file failed (names it)
    ├── InvalidOutputError (_structured)       a reply's text is not JSON or breaks the schema
    ├── TemplateInputError (_templates)        a row's fields do not fill the prompt template
    └── SimulatorError, DirectiveError,        the simulator cannot start; a bad [sim:...] directive;
        SchemaError (simulator)                a schema it cannot answer

Messages name the option or row and the bad value, never an API key.
"""

from __future__ import annotations


class FlinkLLMError(Exception):
    """Root of every exception raised by flink-llm-udf."""


class InvalidOptionError(FlinkLLMError, ValueError):
    """An option has a value outside what it allows."""


class InvalidOptionTypeError(FlinkLLMError, TypeError):
    """An option has the wrong type."""


class ConfigurationError(FlinkLLMError):
    """The call cannot be set up when opened (e.g. no endpoint anywhere)."""


class TokenizerUnavailableError(ConfigurationError):
    """``max_context_size`` is set but no tiktoken encoding can be loaded without a download."""


class EndpointError(FlinkLLMError):
    """One request to the endpoint failed; ``retryable`` says whether another attempt may help."""

    def __init__(
        self, message: str, *, retryable: bool, status: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.status = status
        self.retry_after = retry_after


class EndpointStatusError(EndpointError):
    """The endpoint answered with an HTTP error status."""


class EndpointConnectionError(EndpointError):
    """The connection failed, was reset, or closed before a full response."""


class EndpointTimeoutError(EndpointError):
    """The request did not complete within its timeout."""


class MalformedResponseError(EndpointError):
    """A success status whose body is not the JSON the API promises."""


class InvalidReplyError(MalformedResponseError):
    """A well-formed answer whose content does not match the requested schema (or labels).

    Asked again up to ``invalid_output_retries`` times whatever the retry strategy: a model's
    sample, not the server's health, is at fault.
    """


class RowFailedError(FlinkLLMError):
    """A row's request failed and the provider's strategy is FAILOVER: the job must fail.

    ``row_index`` is the row's position in its batch (or the caller's index), ``cause`` the last
    error message, ``attempts`` the number of requests made for it.
    """

    def __init__(self, row_index: int, cause: str, *, attempts: int, status: int | None) -> None:
        super().__init__(f"row {row_index} failed after {attempts} attempt(s): {cause}")
        self.row_index = row_index
        self.cause = cause
        self.attempts = attempts
        self.status = status

    def __reduce__(self):  # keep it picklable across Flink's Python/Java boundary
        return (_rebuild_row_failed, (self.row_index, self.cause, self.attempts, self.status))


def _rebuild_row_failed(row_index: int, cause: str, attempts: int, status: int | None) -> RowFailedError:
    return RowFailedError(row_index, cause, attempts=attempts, status=status)
