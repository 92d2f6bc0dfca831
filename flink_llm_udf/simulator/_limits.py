"""Fixed-window request counter behind ``rate_per_minute``.

The first admitted request opens a window of ``window_s`` seconds; up to ``limit`` requests
are admitted in it, later ones are refused with the time left until the window closes (the
``Retry-After`` a well-behaved client should honour). The next request after the window
closed opens a new one. The clock is a parameter so tests never sleep.
"""

from __future__ import annotations

__all__ = ["FixedWindow"]


class FixedWindow:
    """Admit at most ``limit`` requests per ``window_s``-second window."""

    __slots__ = ("_count", "_start", "window_s")

    def __init__(self, window_s: float = 60.0) -> None:
        self.window_s = window_s
        self._start: float | None = None
        self._count = 0

    def acquire(self, limit: int, now: float) -> float | None:
        """Count a request at ``now``: ``None`` if admitted, else seconds until the window rolls."""
        if self._start is None or now - self._start >= self.window_s:
            self._start = now
            self._count = 0
        if self._count >= limit:
            return max(self._start + self.window_s - now, 0.0)
        self._count += 1
        return None

    def reset(self) -> None:
        """Forget the current window."""
        self._start = None
        self._count = 0
