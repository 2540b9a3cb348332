"""The one HTTP client: (connect, read) timeouts, exponential backoff, Range, raw bytes.

Both the input downloads (:mod:`tasks.inputs.download`, streaming into the store) and the
RPM repository metadata (:mod:`tasks.inputs.rpmpins`, read into memory) go through here:

- :func:`open_from` sends one GET, asking for ``Range: bytes=N-`` when N bytes are held
  already, and sorts the answer: a body to read (:class:`Body`), "you hold it all" (None),
  :class:`Transient` (5xx, a lost connection, a timeout, a refused resume: worth another
  try) or :class:`~tasks.errors.DownloadError` (a 4xx, TLS: never retried).
- :func:`with_retries` runs an attempt again after each :class:`Transient`, sleeping
  :data:`RETRY_DELAYS` (0.5, 1, 2 s) in between.
- Bodies are read as received, never decoded: ``Content-Encoding`` is part of what is
  pinned, and the sha256 is of the bytes on the wire.
"""

from __future__ import annotations

import http.client
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

from tasks.errors import DownloadError

if TYPE_CHECKING:  # requests and urllib3 are imported where they are used: importing this stays cheap
    import requests

CHUNK = 1 << 20
TIMEOUT: tuple[float, float] = (10.0, 60.0)  # (connect, read) seconds
DEADLINE = 1800.0  # seconds one URL may take, retries included (a drip never times out per read)
BACKOFF, RETRIES = 0.5, 3
RETRY_DELAYS: tuple[float, ...] = tuple(BACKOFF * 2**i for i in range(RETRIES))  # 0.5, 1, 2 s
Log = Callable[[str], None]
T = TypeVar("T")

_CONTENT_RANGE = re.compile(r"bytes\s+(?:(\d+)-\d+|\*)/(\d+|\*)")


class Transient(Exception):  # noqa: N818 - a signal to retry, never shown to a user as such
    """A failure worth another attempt at the same URL after a delay."""


class RangeRefused(Transient):
    """The server cannot resume at the offset asked for: the bytes held must be dropped."""


def _quiet(_message: str) -> None:
    pass


def network_errors() -> tuple[type[BaseException], ...]:
    """A flaky network, as session.get (requests) and resp.raw.read1 (urllib3) report it."""
    import requests
    import urllib3

    return (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError,
            urllib3.exceptions.HTTPError, http.client.HTTPException)


def new_session(pool: int = 4) -> requests.Session:
    """A Session pooling ``pool`` connections, without urllib3's own retries: every retry goes
    through :func:`with_retries`, whose attempt re-reads what it holds for the Range offset."""
    import requests
    from requests.adapters import HTTPAdapter

    session = requests.Session()
    adapter = HTTPAdapter(pool_connections=pool, pool_maxsize=pool, max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers["User-Agent"] = "compatbuild"
    return session


def with_retries(attempt: Callable[[], T], *, what: str, say: Log = _quiet,
                 stop: threading.Event | None = None, until: float | None = None) -> T:
    """``attempt()``, again after each :class:`Transient`; DownloadError once the delays run out,
    or when the next try would start after ``until`` (a :func:`time.monotonic` deadline).
    A set ``stop`` ends the wait between tries at once (:class:`Interrupted`)."""
    tries = 0
    while True:
        try:
            return attempt()
        except Transient as exc:
            delays = RETRY_DELAYS  # read at each failure, so tests can shorten it
            if tries >= len(delays):
                raise DownloadError(f"{exc} (gave up after {tries + 1} tries)") from None
            if until is not None and time.monotonic() + delays[tries] >= until:
                raise DownloadError(f"{exc} (gave up at the deadline, after {tries + 1} tries)") from None
            say(f"{what}: {exc}; retrying in {delays[tries]:g} s")
            if stop is not None and stop.wait(delays[tries]):
                raise Interrupted("interrupted") from None
            if stop is None:
                time.sleep(delays[tries])
            tries += 1


class Interrupted(Exception):  # noqa: N818 - the user asked to stop: no retry, no other URL
    """A transfer was stopped (Ctrl-C, or a deadline) from outside the thread reading it."""


class Stop(threading.Event):
    """An Event that, once set, also shuts down every socket a :class:`Body` registered with
    it: a read blocked on a stalled server returns at once instead of after the read timeout."""

    def __init__(self) -> None:
        super().__init__()
        self._live: set[Body] = set()
        self._guard = threading.Lock()

    def set(self) -> None:
        super().set()
        with self._guard:
            live = list(self._live)
        for body in live:
            body.abort()

    def watch(self, body: Body) -> None:
        with self._guard:
            self._live.add(body)
        if self.is_set():
            body.abort()

    def unwatch(self, body: Body) -> None:
        with self._guard:
            self._live.discard(body)


@dataclass(eq=False)  # hashed by identity: a Stop holds the live ones in a set
class Body:
    """An answer to read: its bytes start at ``start``; ``total`` is the whole file's length."""

    url: str
    response: requests.Response
    start: int
    total: int | None
    lost: BaseException | None = field(default=None, init=False)

    def chunks(self) -> Iterator[bytes]:
        """The bytes as received, never decoded; a network error ends them (see :meth:`check`).

        ``read1`` returns what one socket read brings (up to CHUNK), so a connection that
        dies mid-body loses nothing already received: the resume starts right after it.
        """
        network = network_errors()
        try:
            while chunk := self.response.raw.read1(CHUNK, decode_content=False):
                yield chunk
        except network as exc:
            self.lost = exc

    def check(self, held: int) -> None:
        """Raise :class:`Transient` unless ``held`` bytes (start included) are the whole file."""
        if self.total is not None and held < self.total:
            raise Transient(f"truncated: got {held} of {self.total} bytes from {self.url}")
        if self.lost is not None:
            raise Transient(f"{why(self.lost)} after {held} bytes from {self.url}")

    def abort(self) -> None:
        """Shut the connection down from any thread: a blocked read returns at once."""
        conn = getattr(self.response.raw, "connection", None)
        sock = getattr(conn, "sock", None)
        if isinstance(sock, socket.socket):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def __enter__(self) -> Body:
        return self

    def __exit__(self, *exc: object) -> None:
        self.response.close()


def open_from(session: requests.Session, url: str, offset: int = 0,
              timeout: tuple[float, float] | None = None) -> Body | None:
    """GET ``url`` from byte ``offset``; None when the ``offset`` bytes held are the whole file.

    Raises :class:`Transient` on a lost connection, a timeout or a 5xx,
    :class:`RangeRefused` when the server cannot resume there, and DownloadError otherwise.
    """
    import requests

    network = network_errors()
    headers = {"Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        resp = session.get(url, headers=headers, stream=True, timeout=timeout or TIMEOUT)
    except requests.exceptions.SSLError as exc:
        raise DownloadError(f"TLS error for {url}: {why(exc)}") from None
    except network as exc:
        raise Transient(f"{why(exc)} for {url}") from None
    except requests.RequestException as exc:
        raise DownloadError(f"cannot fetch {url}: {why(exc)}") from None
    code, length = resp.status_code, resp.headers.get("Content-Length", "")
    start, whole = _content_range(resp.headers.get("Content-Range", ""))
    if code == 206 and offset and start == offset:
        if whole is None and length.isdigit():
            whole = offset + int(length)
        return Body(url, resp, offset, whole)
    if code == 200:  # a fresh start, or a server that ignored our Range
        return Body(url, resp, 0, int(length) if length.isdigit() else None)
    resp.close()
    if code == 416 and offset and whole == offset:  # what is held is all there is
        return None
    if (code == 416 and offset) or (code == 206 and offset):
        raise RangeRefused(f"HTTP {code}: cannot resume at byte {offset} of {url}; restarting")
    if code >= 500:
        raise Transient(f"HTTP {code} {resp.reason} for {url}")
    raise DownloadError(f"HTTP {code} {resp.reason} for {url}")


def get_bytes(url: str, *, session: requests.Session | None = None, say: Log = _quiet) -> bytes:
    """The bytes at ``url``, in memory: retried with backoff, a broken body resumed by Range."""
    held = bytearray()

    def attempt(s: requests.Session) -> bytes:
        try:
            body = open_from(s, url, len(held))
        except RangeRefused:
            held.clear()
            raise
        if body is None:
            return bytes(held)
        with body:
            if body.start == 0:
                held.clear()
            for chunk in body.chunks():
                held.extend(chunk)
        body.check(len(held))
        return bytes(held)

    if session is not None:
        return with_retries(lambda: attempt(session), what=url, say=say)
    with new_session(1) as own:
        return with_retries(lambda: attempt(own), what=url, say=say)


def _content_range(value: str) -> tuple[int | None, int | None]:
    """(first byte, complete length) from ``bytes 100-199/200`` or ``bytes */200``."""
    m = _CONTENT_RANGE.match(value.strip())
    if not m:
        return None, None
    start, whole = m.groups()
    return (int(start) if start else None), (int(whole) if whole.isdigit() else None)


def why(exc: BaseException) -> str:
    """The most specific one-line reason inside a requests/urllib3 exception chain."""
    import requests
    import urllib3

    if isinstance(exc, (requests.Timeout, urllib3.exceptions.TimeoutError)):
        return "timed out"
    todo: list[BaseException] = [exc]
    for e in todo:  # grows as we go; finite, as nothing is added twice
        if isinstance(e, OSError) and e.strerror:
            return e.strerror
        nested = [getattr(e, "reason", None), e.__cause__, e.__context__, *e.args]
        todo += [n for n in nested if isinstance(n, BaseException) and n not in todo]
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
