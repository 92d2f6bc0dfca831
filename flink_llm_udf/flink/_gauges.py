"""The engine's metrics on Flink's metric group, under the ``flink_llm`` group.

PyFlink counters only count when updated from the bundle thread (Beam keeps the metrics
container thread-local), but our requests complete on an event-loop thread. So the engine counts
into a thread-safe ``CountingObserver`` and every metric is a gauge over it, which Flink reads at
each bundle end. Names are ``METRIC_NAMES``; counts are cumulative per subtask.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .._observers import METRIC_NAMES, CountingObserver

METRIC_GROUP = "flink_llm"


#: When a list, every ``FlinkMetrics`` opened in this process is appended to it: a local run
#: (the Python workers run in the client's process) can then total them, as ``flink-llm demo``
#: does. None (the default) keeps nothing.
opened: list[FlinkMetrics] | None = None


class FlinkMetrics(CountingObserver):
    """A ``CountingObserver`` whose values are registered as gauges on a Flink metric group."""

    def __init__(self, metric_group: Any | None) -> None:
        super().__init__()
        if opened is not None:
            opened.append(self)
        if metric_group is None:  # python.metric.enabled = false
            return
        group = metric_group.add_group(METRIC_GROUP)
        for name in METRIC_NAMES:
            group.gauge(name, self._reader(name))

    def _reader(self, name: str) -> Callable[[], int]:
        return lambda: int(self.value(name))
