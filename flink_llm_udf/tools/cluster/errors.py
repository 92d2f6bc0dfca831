"""The one error of the standalone-cluster tool, and the log excerpts its messages carry."""

from __future__ import annotations

from flink_llm_udf._errors import FlinkLLMError

__all__ = ["ClusterError", "last_lines"]


class ClusterError(FlinkLLMError):
    """The standalone cluster could not be started, reached, used or stopped."""


def last_lines(text: str, lines: int) -> str:
    """The last ``lines`` lines of ``text``: where a failing process writes its reason."""
    return "\n".join(text.splitlines()[-lines:])
