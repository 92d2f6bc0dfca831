"""The result cache: successful answers kept by request, so a repeated request is paid for once.

The engine looks a request up (``cache_key`` of its URL and body bytes) before sending it and
stores a successful answer after. ``MemoryCache`` is an LRU per engine; ``RedisCache`` is a Redis
store every subtask, job and rerun shares. A cache never fails a row: a store that does not
answer is a miss (the endpoint is called), counted in ``errors`` and logged as a warning (the
first failure, then at most one a minute). After a Redis failure a circuit breaker skips Redis
for ``breaker_s``, so rows during an outage pay no timeout each; one probe then tries it again.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal, Protocol
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ._errors import ConfigurationError, InvalidOptionError
from ._secrets import Redactor, URLCredentials, split_credentials

if TYPE_CHECKING:
    from redis.asyncio import Redis

logger = logging.getLogger(__name__)

#: Every key starts with this, so ``redis-cli --scan --pattern 'flink-llm:v1:*'`` finds ours only;
#: the version changes when the stored value's format does.
KEY_PREFIX = "flink-llm:v1:"
CACHE_OPTION = "cache"
PASSWORD_FILE_OPTION = "cache-password-file"
REDIS_SCHEMES = ("redis", "rediss", "unix")
_OFF = ("", "none", "off")
_ALLOWED = '"memory", "none"/"off", or a redis://, rediss:// or unix:// URL'
#: At most one warning per this many seconds while a store keeps failing.
WARN_INTERVAL_S = 60.0
#: How long Redis is skipped after a failure before one request tries it again.
BREAKER_S = 5.0

Clock = Callable[[], float]


def cache_key(url: str, body: bytes) -> str:
    """The key of a request: its body holds model, messages and every parameter; the URL the rest."""
    digest = hashlib.sha256(url.encode("utf-8", "surrogatepass") + b"\0" + body).hexdigest()
    return KEY_PREFIX + digest


class ResultCache(Protocol):
    """Where answers are kept; ``get``/``put`` never raise for the store's own failures."""

    hits: int
    misses: int
    stores: int
    #: store operations that failed (each one a miss or a lost store, never a failed row)
    errors: int

    async def get(self, key: str) -> bytes | None: ...

    async def put(self, key: str, value: bytes) -> None: ...

    async def aclose(self) -> None: ...

    def describe(self) -> str:
        """What the cache is, for logs: never a password."""
        ...


class MemoryCache:
    """An LRU of at most ``max_entries`` answers, each expiring ``ttl_s`` after it was stored.

    Thread-safe: ``open_cache("memory")`` gives every engine of the process the same one (a
    Python worker's functions, successive ``run_batch`` calls), each on its own loop thread.
    """

    __slots__ = (
        "_clock",
        "_entries",
        "_lock",
        "errors",
        "hits",
        "max_entries",
        "misses",
        "stores",
        "ttl_s",
    )

    def __init__(self, max_entries: int, ttl_s: float | None, clock: Clock = time.monotonic) -> None:
        if isinstance(max_entries, bool) or not isinstance(max_entries, int) or max_entries < 1:
            raise InvalidOptionError(f"cache_max_entries={max_entries!r} is not allowed: must be an int >= 1")
        self.max_entries = max_entries
        self.ttl_s = _checked_ttl(ttl_s)
        self._clock = clock
        # key -> (expires at, or None; value); the oldest used first
        self._entries: OrderedDict[str, tuple[float | None, bytes]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = self.stores = self.errors = 0

    def __len__(self) -> int:
        return len(self._entries)

    async def get(self, key: str) -> bytes | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                self.misses += 1
                return None
            expires_at, value = entry
            if expires_at is not None and self._clock() >= expires_at:
                del self._entries[key]
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return value

    async def put(self, key: str, value: bytes) -> None:
        expires_at = None if self.ttl_s is None else self._clock() + self.ttl_s
        with self._lock:
            entries = self._entries
            entries[key] = (expires_at, value)
            entries.move_to_end(key)
            if len(entries) > self.max_entries:
                entries.popitem(last=False)
            self.stores += 1

    async def aclose(self) -> None:
        """Nothing to release: the entries stay for the process's other and later engines."""

    def describe(self) -> str:
        return f"memory (LRU of up to {self.max_entries} entries, {_show_ttl(self.ttl_s)})"

    def __repr__(self) -> str:
        return f"MemoryCache({self.describe()})"


class RedisCache:
    """Answers in Redis (``SET key value EX ttl``, ``GET``) through redis-py's asyncio client.

    The client is made on first use inside the running event loop (a client is bound to its
    loop, and the engine's loop is not running when the engine is built). Connect and read
    time out after ``timeout_s``. The password comes from ``password_file`` (read here) or the
    URL, never both; ``rediss://`` checks the server's certificate and host name against the
    system's CAs plus ``tls_ca_file``.
    """

    def __init__(
        self,
        url: str,
        *,
        ttl_s: float | None,
        password_file: str | None = None,
        tls_ca_file: str | None = None,
        timeout_s: float = 1.0,
        breaker_s: float = BREAKER_S,
        clock: Clock = time.monotonic,
    ) -> None:
        validate_cache_spec(url)
        credentials = _redis_credentials(url)
        password = credentials.password
        if password_file is not None:
            if password is not None:
                raise ConfigurationError(
                    f"{CACHE_OPTION}={show_cache_url(url)} carries a password and "
                    f"{PASSWORD_FILE_OPTION}={password_file!r} is set too: give one of them"
                )
            password = _read_password_file(password_file)
        self.ttl_s = _checked_ttl(ttl_s)
        self._url = credentials.url
        self._shown = show_cache_url(url)
        self._username = credentials.username or None
        self._password = password
        self._tls_ca_file = tls_ca_file
        self._timeout_s = timeout_s
        self._breaker_s = breaker_s
        self._clock = clock
        login = f"{self._username}:{password}" if self._username and password else None
        self._redactor = Redactor.of(password, login)
        self._store_errors = _store_errors()  # imports redis (~70 ms) only when Redis is used
        self._client: Redis | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._open_until: float | None = None  # the breaker is open (Redis skipped) until then
        self._probing = False
        self._failures = _FailureLog(self._shown, clock)
        self.hits = self.misses = self.stores = self.errors = 0
        #: operations the breaker answered without asking Redis (gets as misses, puts dropped)
        self.skipped = 0

    async def get(self, key: str) -> bytes | None:
        mode = self._admit()
        if mode == "skip":
            self.skipped += 1
            self.misses += 1
            return None
        try:
            value = await self._redis().get(key)
        except self._store_errors as exc:
            self._failed(exc)
            self.misses += 1
            return None
        finally:
            if mode == "probe":
                self._probing = False
        self._succeeded()
        if value is None:
            self.misses += 1
            return None
        self.hits += 1
        return bytes(value)

    async def put(self, key: str, value: bytes) -> None:
        mode = self._admit()
        if mode == "skip":
            self.skipped += 1
            return
        ttl = self.ttl_s
        try:
            if ttl is None:
                await self._redis().set(key, value)
            elif ttl == int(ttl):
                await self._redis().set(key, value, ex=int(ttl))
            else:  # EX takes whole seconds only
                await self._redis().set(key, value, px=max(1, round(ttl * 1000)))
        except self._store_errors as exc:
            self._failed(exc)
            return
        finally:
            if mode == "probe":
                self._probing = False
        self._succeeded()
        self.stores += 1

    async def aclose(self) -> None:
        client, loop = self._client, self._loop
        self._client = self._loop = None
        if client is None or loop is not asyncio.get_running_loop():
            return  # a client of a loop that is gone: its connections went with it
        try:
            await client.aclose()
        except self._store_errors as exc:
            logger.debug("closing result cache %s: %s", self._shown, self._detail(exc))

    def describe(self) -> str:
        return f"redis {self._shown} ({_show_ttl(self.ttl_s)})"

    def __repr__(self) -> str:
        return f"RedisCache({self.describe()})"

    def _admit(self) -> Literal["call", "probe", "skip"]:
        """Whether this operation asks Redis: always while it answers; one probe per breaker period."""
        if self._open_until is None:
            return "call"
        if self._probing or self._clock() < self._open_until:
            return "skip"
        self._probing = True
        return "probe"

    def _redis(self) -> Redis:
        """The client of the running loop, made on first use there."""
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            from redis.asyncio import Redis

            extra: dict[str, Any] = {}
            if urlsplit(self._url).scheme == "rediss":
                extra = {
                    "ssl_cert_reqs": "required",
                    "ssl_check_hostname": True,
                    "ssl_ca_certs": self._tls_ca_file,
                }
            self._client = Redis.from_url(
                self._url,
                username=self._username,
                password=self._password,
                socket_timeout=self._timeout_s,
                socket_connect_timeout=self._timeout_s,
                **extra,
            )
            self._loop = loop
        return self._client

    def _failed(self, exc: BaseException) -> None:
        self.errors += 1
        self._open_until = self._clock() + self._breaker_s
        self._failures.failure(self._detail(exc))

    def _succeeded(self) -> None:
        if self._open_until is not None:
            self._open_until = None
            self._failures.recovered()

    def _detail(self, exc: BaseException) -> str:
        return self._redactor.text(f"{type(exc).__name__}: {exc}")


def _store_errors() -> tuple[type[BaseException], ...]:
    """What a failing store raises: every one is a miss, never a failed row."""
    from redis.exceptions import RedisError

    # OSError: refused, reset, TLS and CA-file errors; TimeoutError: a timeout redis-py let through
    return (RedisError, OSError, asyncio.TimeoutError)


class _FailureLog:
    """Warns of the first failure at once, then at most once per ``interval_s`` with a count."""

    __slots__ = ("_clock", "_interval_s", "_last_at", "_unreported", "_what")

    def __init__(self, what: str, clock: Clock, interval_s: float = WARN_INTERVAL_S) -> None:
        self._what = what
        self._clock = clock
        self._interval_s = interval_s
        self._last_at: float | None = None
        self._unreported = 0

    def failure(self, detail: str) -> None:
        now = self._clock()
        self._unreported += 1
        if self._last_at is None:
            logger.warning(
                "result cache %s failed, rows go to the endpoint until it answers again: %s",
                self._what,
                detail,
            )
        elif now - self._last_at >= self._interval_s:
            logger.warning(
                "result cache %s: %d failure(s) in the last %.0f s, the latest: %s",
                self._what,
                self._unreported,
                now - self._last_at,
                detail,
            )
        else:
            return
        self._last_at = now
        self._unreported = 0

    def recovered(self) -> None:
        logger.info(
            "result cache %s answers again (%d failure(s) since the last warning)",
            self._what,
            self._unreported,
        )
        self._unreported = 0


_process_caches: dict[tuple[int, float | None], MemoryCache] = {}
_process_caches_lock = threading.Lock()


def process_memory_cache(max_entries: int, ttl_s: float | None) -> MemoryCache:
    """The process's memory cache of that size and TTL: one per Python worker (and notebook), so
    a rerun in the same process, or another function asking the same, finds the answers."""
    with _process_caches_lock:
        cache = _process_caches.get((max_entries, ttl_s))
        if cache is None:
            cache = _process_caches[(max_entries, ttl_s)] = MemoryCache(max_entries, ttl_s)
        return cache


def open_cache(
    spec: str | None,
    *,
    ttl_s: float | None,
    max_entries: int,
    password_file: str | None = None,
    tls_ca_file: str | None = None,
) -> ResultCache | None:
    """The cache ``spec`` names: None for none, ``MemoryCache`` for "memory", else ``RedisCache``.

    No I/O but reading ``password_file``: Redis is first asked when the engine's loop runs.
    """
    validate_cache_spec(spec)
    if spec is None or spec.strip().lower() in _OFF:
        return None
    if spec.strip().lower() == "memory":
        return process_memory_cache(max_entries, ttl_s)
    return RedisCache(spec, ttl_s=ttl_s, password_file=password_file, tls_ca_file=tls_ca_file)


def validate_cache_spec(spec: object) -> None:
    """Raise ``InvalidOptionError`` unless ``spec`` is a value ``open_cache`` takes (no I/O)."""
    if spec is None:
        return
    if not isinstance(spec, str):
        raise InvalidOptionError(f"{CACHE_OPTION}={spec!r} is not allowed: must be {_ALLOWED}")
    if spec.strip().lower() in (*_OFF, "memory"):
        return
    scheme = urlsplit(spec).scheme.lower() if "://" in spec else ""
    reason = None
    if scheme not in REDIS_SCHEMES:
        reason = f"must be {_ALLOWED}"
    else:
        from redis.asyncio.connection import parse_url

        try:
            options = parse_url(_redis_credentials(spec).url)
        except ValueError as exc:
            reason = "not a Redis URL redis-py takes"
            if "***" not in show_cache_url(spec):  # its message may quote a piece of the password
                reason += f" ({exc})"
        else:
            if scheme == "unix" and not options.get("path"):
                reason = "a unix:// URL needs the socket's path (unix:///run/redis.sock)"
    if reason is not None:
        raise InvalidOptionError(f"{CACHE_OPTION}={show_cache_url(spec)} is not allowed: {reason}")


_QUERY_PASSWORD = re.compile(r"([?&])password=[^&#]*&?", re.IGNORECASE)


def show_cache_url(url: str) -> str:
    """A Redis URL as messages show it: ``'redis://***@host:6379/0'``, never the password.

    Masked as text, before any parsing: a password with an unencoded ``#``, ``/`` or ``?``
    would make a URL parser miss the credentials and show them as a path or fragment.
    """
    scheme, separator, rest = url.partition("://")
    user, masked = "", False
    if separator and "@" in rest:
        userinfo, _, rest = rest.rpartition("@")
        # a lone word may be a password (redis://secret@host): a user shows only before a ':'
        user, masked = (userinfo.partition(":")[0] if ":" in userinfo else ""), True
    if _QUERY_PASSWORD.search(rest):
        rest, masked = _QUERY_PASSWORD.sub(r"\1", rest).rstrip("?&"), True
    return repr(f"{scheme}{separator}{f'{user}:***@' if masked else ''}{rest}")


def _redis_credentials(url: str) -> URLCredentials:
    """The URL without its password, whether in ``user:password@`` or (as redis-py allows) the query."""
    credentials = split_credentials(url)
    parts = urlsplit(credentials.url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    in_query = [value for name, value in query if name == "password"]
    if not in_query:
        return credentials
    rest = urlencode([(name, value) for name, value in query if name != "password"])
    clean = urlunsplit(parts._replace(query=rest))
    return URLCredentials(clean, credentials.username, credentials.password or in_query[0])


def _read_password_file(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as handle:
            password = handle.read().strip()
    except OSError as exc:
        raise ConfigurationError(f"{PASSWORD_FILE_OPTION}={path!r} cannot be read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigurationError(f"{PASSWORD_FILE_OPTION}={path!r} is not UTF-8 text") from None
    if not password:
        raise ConfigurationError(f"{PASSWORD_FILE_OPTION}={path!r} is empty")
    return password


def _checked_ttl(ttl_s: float | None) -> float | None:
    if ttl_s is None:
        return None
    if isinstance(ttl_s, bool) or not isinstance(ttl_s, (int, float)) or not 0 < ttl_s < float("inf"):
        raise InvalidOptionError(f"cache_ttl_s={ttl_s!r} is not allowed: must be a number of seconds > 0")
    return ttl_s


def _show_ttl(ttl_s: float | None) -> str:
    return "no expiry" if ttl_s is None else f"entries expire after {ttl_s:g} s"
