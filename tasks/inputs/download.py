"""Fetch lockfile resources into the content-addressed store: resumable, verified, parallel.

One resource: lock (per URL) → check the store → stream into ``partial/<key>.part`` while
hashing the raw bytes received → verify → ``os.replace`` under ``sha256/``. A broken transfer
leaves only the ``.part``; the next attempt, or the next run after a ``kill -9``, hashes what
it holds and asks for the rest with ``Range: bytes=N-``. 5xx answers, lost connections,
timeouts and truncated bodies are retried with backoff; a 4xx never is.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import queue
import re
import stat
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

import requests
import urllib3
from requests.adapters import HTTPAdapter
from rich.filesize import decimal

from tasks.errors import CompatError, DownloadError, HashMismatch, LockfileError
from tasks.inputs.lockfile import Lockfile, Resource
from tasks.settings import Settings
from tasks.store import Store

CHUNK = 1 << 20
TIMEOUT: tuple[float, float] = (10.0, 60.0)  # (connect, read) seconds
RETRY_DELAYS: tuple[float, ...] = (0.5, 1.0, 2.0)  # sleeps between the attempts at one URL
Progress = Callable[[int, int | None], None]  # (bytes so far, total bytes when known)
Log = Callable[[str], None]

# A flaky network, as session.get (requests) and resp.raw.stream (urllib3) report it.
_NETWORK = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError,
            urllib3.exceptions.HTTPError, http.client.HTTPException)
_CONTENT_RANGE = re.compile(r"bytes\s+(?:(\d+)-\d+|\*)/(\d+|\*)")


@dataclass(frozen=True)
class Fetched:
    """A resource whose bytes are in the store: ``action`` is "cached" or "downloaded"."""

    resource: Resource
    path: Path
    sha256: str
    action: str


class _Retry(Exception):
    """A transient failure: worth another attempt at the same URL after a delay."""


class _Fatal(DownloadError):
    """A failure no other URL can cure: the local disk, or an interrupt."""


def _identity(url: str) -> str:
    return url


def _quiet(_message: str) -> None:
    pass


def new_session(pool: int = 4) -> requests.Session:
    """A Session pooling ``pool`` connections, without urllib3 retries: every retry goes
    through this module's loop, which re-reads the ``.part`` so the Range offset is right."""
    session = requests.Session()
    adapter = HTTPAdapter(pool_connections=pool, pool_maxsize=pool, max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers["User-Agent"] = "compatbuild"
    return session


def fetch(resource: Resource, store: Store, *, mirror: Callable[[str], str] = _identity,
          session: requests.Session | None = None, progress: Progress | None = None,
          log: Log = _quiet, cancel: threading.Event | None = None) -> Fetched:
    """Put ``resource`` in ``store`` unless it is there; log "Downloading" only when fetching."""
    if found := _cached(resource, store):
        return found
    with ExitStack() as stack:
        try:
            store.ensure()
            stack.enter_context(store.lock(resource.url))
        except (CompatError, OSError) as exc:
            raise DownloadError(f"{resource.label}: {_disk_text(store.root, exc)}") from None
        if found := _cached(resource, store):  # another process finished it while we waited
            return found
        session = session or stack.enter_context(new_session(1))
        part = store.partial(resource.url)  # one .part per resource, resumable from any mirror
        job = _Transfer(part, session, progress, log, cancel)
        urls = list(dict.fromkeys(mirror(u) for u in (resource.url, *resource.alt_urls)))
        url, sha, size = job.first_that_works(resource.label, urls)
        if resource.sha256 and sha != resource.sha256:
            try:
                where = f"moved the file to {store.quarantine(part, resource.label)}"
            except OSError:
                part.unlink(missing_ok=True)
                where = "deleted the file"
            raise HashMismatch(f"{resource.label}: sha256 mismatch for {url}: expected "
                               f"{resource.sha256}, got {sha}; {where}")
        try:
            path = store.adopt(part, sha)
            if not resource.sha256:
                store.record_url(resource.url, sha, size)
        except OSError as exc:
            raise DownloadError(f"{resource.label}: {_disk_text(store.root, exc)}") from None
        return Fetched(resource, path, sha, "downloaded")
    raise AssertionError("unreachable")  # for mypy: an ExitStack could swallow exceptions


def _cached(resource: Resource, store: Store) -> Fetched | None:
    if resource.sha256:
        sha = resource.sha256 if store.has(resource.sha256) else None
    else:
        sha = store.url_hash(resource.url)
    return Fetched(resource, store.path(sha), sha, "cached") if sha else None


@dataclass
class _Transfer:
    """Bring one ``.part`` to a complete file, from the first URL that serves it."""

    part: Path
    session: requests.Session
    progress: Progress | None
    say: Log
    cancel: threading.Event | None

    def first_that_works(self, label: str, urls: list[str]) -> tuple[str, str, int]:
        failures: list[str] = []
        for i, url in enumerate(urls):
            self.say(f"Downloading {label} ({url})")
            try:
                return (url, *self.with_retries(label, url))
            except _Fatal as exc:
                raise _Fatal(f"{label}: {exc}") from None
            except DownloadError as exc:
                failures.append(str(exc))
                if i + 1 < len(urls):
                    self.say(f"{label}: {exc}; trying the next URL")
        more = f" ({len(failures) - 1} alternate URLs also failed)" if len(failures) > 1 else ""
        raise DownloadError(f"{label}: {failures[0]}{more}")

    def with_retries(self, label: str, url: str) -> tuple[str, int]:
        attempt = 0
        while True:
            try:
                if urlparse(url).scheme == "file":
                    return self.copy_file(url)
                return self.attempt(url)
            except _Retry as exc:
                if attempt >= len(RETRY_DELAYS):
                    raise DownloadError(f"{exc} (gave up after {attempt + 1} tries)") from None
                self.say(f"{label}: {exc}; retrying in {RETRY_DELAYS[attempt]:g} s")
                time.sleep(RETRY_DELAYS[attempt])
                attempt += 1

    def attempt(self, url: str) -> tuple[str, int]:
        """One GET, resuming what the ``.part`` holds; (sha256, size) once it is complete."""
        h, offset = _hash_part(self.part)
        headers = {"Accept-Encoding": "identity"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
        try:
            resp = self.session.get(url, headers=headers, stream=True, timeout=TIMEOUT)
        except requests.exceptions.SSLError as exc:
            raise DownloadError(f"TLS error for {url}: {_why(exc)}") from None
        except _NETWORK as exc:
            raise _Retry(f"{_why(exc)} for {url}") from None
        except requests.RequestException as exc:
            raise DownloadError(f"cannot fetch {url}: {_why(exc)}") from None
        with resp:
            code, length = resp.status_code, resp.headers.get("Content-Length", "")
            start, whole = _content_range(resp.headers.get("Content-Range", ""))
            if code == 416 and whole == offset:  # the .part holds it all: killed before adopt
                return h.hexdigest(), offset
            if (code == 416 and offset) or (code == 206 and offset and start != offset):
                self.part.unlink(missing_ok=True)
                raise _Retry(f"HTTP {code}: cannot resume at byte {offset} of {url}; restarting")
            if code >= 500:
                raise _Retry(f"HTTP {code} {resp.reason} for {url}")
            if code == 206 and offset:
                mode = "ab"
                if whole is None and length.isdigit():
                    whole = offset + int(length)
            elif code == 200:  # a fresh start, or a server that ignored our Range
                h, offset, mode = hashlib.sha256(), 0, "wb"
                whole = int(length) if length.isdigit() else None
            else:
                raise DownloadError(f"HTTP {code} {resp.reason} for {url}")
            got, lost = self.write(_raw_chunks(resp.raw), mode, h,
                                   offset, whole)
        if whole is not None and got < whole:
            raise _Retry(f"truncated: got {got} of {whole} bytes from {url}")
        if lost is not None:
            raise _Retry(f"{_why(lost)} after {got} bytes from {url}")
        return h.hexdigest(), got

    def copy_file(self, url: str) -> tuple[str, int]:
        """Copy a ``file://`` URL the same way: hashed while written, into the ``.part``."""
        src = Path(url2pathname(urlparse(url).path))
        try:
            with src.open("rb") as f:
                size = os.fstat(f.fileno()).st_size
                h = hashlib.sha256()
                got, _ = self.write(iter(lambda: f.read(CHUNK), b""), "wb", h, 0, size)
        except OSError as exc:
            raise DownloadError(f"cannot read {src}: {exc.strerror or exc}") from None
        return h.hexdigest(), got

    def write(self, chunks: Iterator[bytes], mode: str, h: hashlib._Hash, got: int,
              whole: int | None) -> tuple[int, BaseException | None]:
        """Append ``chunks`` to the ``.part`` and ``h``; (bytes held, network error or None).

        Hashing runs in its own thread (hashlib releases the GIL) while this one reads the
        socket and writes the file, so the hash costs almost nothing. No fsync:
        a kill cannot lose page-cache bytes, and after a power loss ``verify`` re-hashes any
        file whose size or mtime changed and moves a damaged one aside.
        Only a local disk error raises; the caller judges a network error by the bytes held."""
        lost: BaseException | None = None
        try:
            with self.part.open(mode) as f, _Sink(h.update) as hasher:
                try:
                    for chunk in chunks:
                        hasher.put(chunk)
                        f.write(chunk)
                        got += len(chunk)
                        if self.progress:
                            self.progress(got, whole)
                        if self.cancel and self.cancel.is_set():
                            raise _Fatal("interrupted")
                except _NETWORK as exc:
                    lost = exc
        except OSError as exc:
            raise _Fatal(_disk_text(self.part, exc)) from None
        return got, lost


def _raw_chunks(raw: urllib3.HTTPResponse) -> Iterator[bytes]:
    """The bytes as received, never decoded (Content-Encoding is part of what is pinned).

    ``read1`` returns what one socket read brings (up to CHUNK), so a connection that dies
    mid-body loses nothing already received: the resume starts right after it.
    """
    while chunk := raw.read1(CHUNK, decode_content=False):
        yield chunk


class _Sink:
    """A worker thread applying ``fn`` to each queued chunk, in order; errors re-raised."""

    def __init__(self, fn: Callable[[bytes], object]) -> None:
        self.fn = fn
        self.queue: queue.Queue[bytes | None] = queue.Queue(maxsize=32)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while (chunk := self.queue.get()) is not None:
            if self.error is None:
                try:
                    self.fn(chunk)
                except BaseException as exc:  # handed to the caller's thread
                    self.error = exc

    def put(self, chunk: bytes) -> None:
        if self.error is not None:
            raise self.error
        self.queue.put(chunk)

    def __enter__(self) -> _Sink:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.queue.put(None)
        self.thread.join()
        if self.error is not None:
            raise self.error


def _hash_part(part: Path) -> tuple[hashlib._Hash, int]:
    """The sha256 state and length of the bytes already in ``part`` (none if it is absent)."""
    try:
        with part.open("rb") as f:
            if stat.S_ISREG(os.fstat(f.fileno()).st_mode):  # a device could read forever
                return hashlib.file_digest(f, "sha256"), f.tell()
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise _Fatal(_disk_text(part, exc)) from None
    return hashlib.sha256(), 0


def _content_range(value: str) -> tuple[int | None, int | None]:
    """(first byte, complete length) from ``bytes 100-199/200`` or ``bytes */200``."""
    m = _CONTENT_RANGE.match(value.strip())
    if not m:
        return None, None
    start, whole = m.groups()
    return (int(start) if start else None), (int(whole) if whole.isdigit() else None)


def _why(exc: BaseException) -> str:
    """The most specific one-line reason inside a requests/urllib3 exception chain."""
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


def _disk_text(path: Path, exc: BaseException) -> str:
    if isinstance(exc, OSError):
        return f"cannot write {exc.filename or path}: {exc.strerror or exc}"
    return str(exc)


def fetch_all(lock: Lockfile, settings: Settings, *, only: str | None = None,
              log: Log = print, idle_summary: bool = True) -> list[Fetched]:
    """Fetch every resource (or one name's) a few at a time; end with a one-line summary.

    ``idle_summary=False`` leaves the summary out when everything was cached already, for
    callers (the image pipeline) that should say nothing when there is nothing to do.
    """
    if only is not None:
        _check_name(lock, only)
    by_url: dict[str, Resource] = {}
    for r in lock.resources(only):
        by_url.setdefault(r.url, r)
    store = Store(settings.cache)
    store.ensure()  # once, before the threads
    cancel = threading.Event()
    with new_session(settings.jobs) as session, _display(settings) as track, \
            ThreadPoolExecutor(max_workers=settings.jobs) as pool:
        futures = [pool.submit(fetch, r, store, mirror=settings.mirror, session=session,
                               progress=track(r), log=log, cancel=cancel)
                   for r in by_url.values()]
        try:
            wait(futures)
        except KeyboardInterrupt:
            cancel.set()
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    errors = [e for f in futures if (e := f.exception()) is not None]
    done = [f.result() for f in futures if f.exception() is None]
    new = [f for f in done if f.action == "downloaded"]
    size = f" ({decimal(sum(f.path.stat().st_size for f in new))})" if new else ""
    failed = f", {len(errors)} failed" if errors else ""
    if new or errors or idle_summary:
        log(f"{len(futures)} file{'s' * (len(futures) != 1)}: {len(new)} downloaded{size}, "
            f"{len(done) - len(new)} cached{failed}")
    if errors and isinstance(errors[0], CompatError) and len(errors) > 1:
        raise type(errors[0])(f"{errors[0]} (and {len(errors) - 1} more failed)") from None
    if errors:
        raise errors[0]
    return done


def _check_name(lock: Lockfile, only: str) -> None:
    groups = {"artifacts": [a.name for a in lock.artifacts], "keys": [k.name for k in lock.keys],
              "rpms": [r.name for r in lock.rpms]}
    if not any(only in names for names in groups.values()):
        have = "; ".join(f"{kind}: {', '.join(n)}" for kind, n in groups.items() if n)
        raise LockfileError(f"{lock.path.name}: no artifact, key or rpm '{only}' "
                            f"(have {have or 'nothing'})")


@contextmanager
def _display(settings: Settings) -> Iterator[Callable[[Resource], Progress | None]]:
    """Rich progress bars on stderr when it is a terminal (``progress``: auto/always/never)."""
    if settings.progress == "never" or (settings.progress != "always" and not sys.stderr.isatty()):
        yield lambda _resource: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, TaskID, TextColumn, TransferSpeedColumn
    from rich.progress import Progress as Bars

    bars = Bars(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                TransferSpeedColumn(), console=Console(stderr=True), transient=True)

    def track(resource: Resource) -> Progress:
        task: list[TaskID] = []

        def update(done: int, total: int | None) -> None:
            if not task:  # made on the first byte, so a cached file never shows a bar
                task.append(bars.add_task(resource.label, total=total))
            bars.update(task[0], completed=done, total=total)
        return update

    with bars:
        yield track
