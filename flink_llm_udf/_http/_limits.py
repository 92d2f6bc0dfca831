"""Bounds on what a reply may cost: the size of its head and of its body, before and after decoding.

``ReplyBody`` collects a body as it arrives, counts it against ``max_reply_bytes`` as sent and
again as decoded, and inflates gzip/deflate incrementally (``zlib.decompressobj`` with
``max_length``), never more than the cap and never more than ``INFLATE_STEP`` bytes per call, so
a small compressed reply that would inflate to gigabytes ends as a clear error after at most the
cap, with the event loop free between steps. Both clients read bodies through it.
"""

from __future__ import annotations

import zlib
from collections import deque

from ._failures import ReplyProblem, ReplyTooLarge

#: The default cap on a reply body (``EngineSettings.max_reply_bytes``).
DEFAULT_MAX_REPLY_BYTES = 64 * 1024 * 1024
#: The status line and header fields of a reply, together.
MAX_HEAD_BYTES = 64 * 1024
#: One header field, name and value (aiohttp's limit).
MAX_FIELD_BYTES = 8190
#: Header fields of one reply, trailers included (aiohttp's limit).
MAX_FIELDS = 128
#: Bytes of chunked framing (a chunk-size line, trailers) that may arrive without body data.
MAX_FRAMING_RUN = 64 * 1024
#: At most this many decoded bytes per inflate step (then the loop runs other work).
INFLATE_STEP = 1024 * 1024

_PLAIN = (b"", b"identity")
_GZIP = (b"gzip", b"x-gzip")


def too_large(cap: int, what: str, seen: int) -> ReplyTooLarge:
    """The error for a body over the cap; ``what`` says how its size was seen."""
    return ReplyTooLarge(
        f"reply body larger than max_reply_bytes={cap}: {what} {seen} bytes "
        "(raise max_reply_bytes / ai.max-reply-bytes if such replies are expected)"
    )


class ReplyBody:
    """One reply's body: raw bytes counted against ``cap``, decoded per ``Content-Encoding``.

    ``feed`` takes bytes as they arrive and inflates up to ``budget`` decoded bytes at once;
    while ``pending``, the owner calls ``inflate`` again (from a later loop iteration);
    ``finish`` gives the decoded body. Errors are ``ReplyProblem`` / ``ReplyTooLarge``.
    """

    __slots__ = ("_cap", "_chunks", "_encoding", "_inflater", "_input", "budget", "raw_size", "size")

    def __init__(self, cap: int, encoding: bytes | None) -> None:
        self._cap = cap
        self.raw_size = 0  # as received
        self.size = 0  # as decoded
        self._chunks: list[bytes] = []
        self._inflater: zlib._Decompress | None = None
        self._input: deque[bytes] | None = None  # compressed bytes not yet given to the inflater
        self.budget = INFLATE_STEP
        sent = b"" if encoding is None else encoding.strip()
        coding = sent.lower()
        if coding in _PLAIN:
            self._encoding = ""
            return
        self._encoding = sent.decode("latin-1")  # as sent: messages redact it, case and all
        if coding in _GZIP:
            self._inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif coding != b"deflate":  # deflate: zlib-wrapped or raw, seen from its first bytes
            raise ReplyProblem(f"unsupported Content-Encoding {self._encoding!r}")
        self._input = deque()

    @property
    def pending(self) -> bool:
        """Compressed bytes received but not inflated yet."""
        inflater = self._inflater
        return bool(self._input) or (inflater is not None and bool(inflater.unconsumed_tail))

    def feed(self, data: bytes) -> None:
        """Take the next bytes of the body (inflating up to ``budget`` of them now)."""
        self.raw_size += len(data)
        if self.raw_size > self._cap:
            raise too_large(self._cap, "received at least", self.raw_size)
        if self._input is None:
            self._chunks.append(data)
            self.size += len(data)
            return
        self._input.append(data)
        self.inflate()

    def inflate(self) -> None:
        """Inflate pending bytes until ``budget`` decoded bytes are spent or none are pending."""
        inflater = self._inflater or self._choose_deflate()
        if inflater is None:
            return
        pending = self._input
        assert pending is not None
        while self.budget > 0:
            data = inflater.unconsumed_tail or (pending.popleft() if pending else b"")
            if not data:
                return
            if inflater.eof:  # bytes after the end of the compressed stream: nothing to decode
                pending.clear()
                return
            try:
                out = inflater.decompress(data, min(self.budget, self._cap - self.size + 1))
            except zlib.error as exc:
                raise ReplyProblem(f"cannot decode the {self._encoding} body: {exc}") from None
            self.size += len(out)
            self.budget -= len(out) or 1  # an input-only step (headers, empty blocks) costs too
            if self.size > self._cap:
                raise too_large(self._cap, f"inflates ({self._encoding}) to more than", self._cap)
            if out:
                self._chunks.append(out)

    def finish(self) -> bytes:
        """The whole decoded body; call once every byte was fed and nothing is ``pending``."""
        while self.pending:
            self.budget = INFLATE_STEP
            self.inflate()
            if self._inflater is None:  # a deflate body of a single byte: not a stream
                break
        if self._input is not None and self.raw_size and (self._inflater is None or not self._inflater.eof):
            raise ReplyProblem(f"cannot decode the {self._encoding} body: the compressed data is cut short")
        chunks = self._chunks
        self._chunks = []
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def _choose_deflate(self) -> zlib._Decompress | None:
        """``deflate`` is zlib-wrapped (RFC 9110) or, from some servers, raw: its header tells."""
        pending = self._input
        assert pending is not None
        head = b"".join(pending)
        if len(head) < 2:
            return None
        pending.clear()
        pending.append(head)
        wrapped = head[0] & 0x0F == 8 and ((head[0] << 8) | head[1]) % 31 == 0
        self._inflater = zlib.decompressobj(zlib.MAX_WBITS if wrapped else -zlib.MAX_WBITS)
        return self._inflater
