"""Fetch lockfile resources into the content-addressed store: resumable, verified, parallel.

One resource: lock (per URL) → check the store → stream into ``partial/<key>.part`` while
hashing the raw bytes received → verify → ``os.replace`` under ``sha256/``. A broken transfer
leaves only the ``.part``; the next attempt, or the next run after a ``kill -9``, hashes what
it holds and asks for the rest with ``Range: bytes=N-``. The HTTP side (timeouts, backoff on
5xx and lost connections, never a retry on a 4xx, Range) is :mod:`tasks.inputs.http`.

:func:`fetch_all` returns what it did (a :class:`Fetched` per file, "cached" or
"downloaded") and says only "Downloading ..." as it works; :func:`summary` is the line a
task prints after it.
"""

from __future__ import annotations

import hashlib
import os
import queue
import stat
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

import requests
from rich.filesize import decimal

from tasks.errors import CompatError, DownloadError, HashMismatch, LockfileError
from tasks.inputs import http
from tasks.inputs.lockfile import Lockfile, Resource
from tasks.settings import Settings
from tasks.store import Store

CHUNK = http.CHUNK
Progress = Callable[[int, int | None], None]  # (bytes so far, total bytes when known)
Log = Callable[[str], None]


@dataclass(frozen=True)
class Fetched:
    """A resource whose bytes are in the store: ``action`` is "cached" or "downloaded"."""

    resource: Resource
    path: Path
    sha256: str
    action: str


class _Fatal(Exception):
    """A failure no other URL can cure: the local disk, or an interrupt."""


def _identity(url: str) -> str:
    return url


def _quiet(_message: str) -> None:
    pass


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
        session = session or stack.enter_context(http.new_session(1))
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
                if urlparse(url).scheme == "file":
                    return (url, *self.copy_file(url))
                return (url, *http.with_retries(partial(self.attempt, url), what=label, say=self.say))
            except _Fatal as exc:
                raise DownloadError(f"{label}: {exc}") from None
            except DownloadError as exc:
                failures.append(str(exc))
                if i + 1 < len(urls):
                    self.say(f"{label}: {exc}; trying the next URL")
        more = f" ({len(failures) - 1} alternate URLs also failed)" if len(failures) > 1 else ""
        raise DownloadError(f"{label}: {failures[0]}{more}")

    def attempt(self, url: str) -> tuple[str, int]:
        """One GET, resuming what the ``.part`` holds; (sha256, size) once it is complete."""
        h, offset = _hash_part(self.part)
        try:
            body = http.open_from(self.session, url, offset)
        except http.RangeRefused:
            self.part.unlink(missing_ok=True)
            raise
        if body is None:  # the .part holds it all: killed between its last byte and adopt
            return h.hexdigest(), offset
        with body:
            if body.start == 0:  # a fresh start, or a server that ignored our Range
                h, mode = hashlib.sha256(), "wb"
            else:
                mode = "ab"
            got = self.write(body.chunks(), mode, h, body.start, body.total)
        body.check(got)
        return h.hexdigest(), got

    def copy_file(self, url: str) -> tuple[str, int]:
        """Copy a ``file://`` URL the same way: hashed while written, into the ``.part``."""
        src = Path(url2pathname(urlparse(url).path))
        try:
            with src.open("rb") as f:
                size = os.fstat(f.fileno()).st_size
                h = hashlib.sha256()
                got = self.write(iter(lambda: f.read(CHUNK), b""), "wb", h, 0, size)
        except OSError as exc:
            raise DownloadError(f"cannot read {src}: {exc.strerror or exc}") from None
        return h.hexdigest(), got

    def write(self, chunks: Iterator[bytes], mode: str, h: hashlib._Hash, got: int,
              whole: int | None) -> int:
        """Append ``chunks`` to the ``.part`` and ``h``; return the bytes the ``.part`` holds.

        Hashing runs in its own thread (hashlib releases the GIL) while this one reads the
        socket and writes the file, so the hash costs almost nothing. No fsync:
        a kill cannot lose page-cache bytes, and after a power loss ``verify`` re-hashes any
        file whose size or mtime changed and moves a damaged one aside.
        Only a local disk error raises here: a network error ends ``chunks``, and the caller
        judges it by the bytes held (:meth:`tasks.inputs.http.Body.check`)."""
        try:
            with self.part.open(mode) as f, _Sink(h.update) as hasher:
                for chunk in chunks:
                    hasher.put(chunk)
                    f.write(chunk)
                    got += len(chunk)
                    if self.progress:
                        self.progress(got, whole)
                    if self.cancel and self.cancel.is_set():
                        raise _Fatal("interrupted")
        except OSError as exc:
            raise _Fatal(_disk_text(self.part, exc)) from None
        return got


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


def _disk_text(path: Path, exc: BaseException) -> str:
    if isinstance(exc, OSError):
        return f"cannot write {exc.filename or path}: {exc.strerror or exc}"
    return str(exc)


def fetch_all(lock: Lockfile, settings: Settings, *, only: str | None = None,
              log: Log = print) -> list[Fetched]:
    """Fetch every resource (or one name's) a few at a time; return what was done to each.

    Logs "Downloading ..." for each file fetched, nothing for a cached one. Failures let
    the other files finish; then each is logged but the first, which is raised.
    """
    if only is not None:
        _check_name(lock, only)
    by_url: dict[str, Resource] = {}
    for r in lock.resources(only):
        by_url.setdefault(r.url, r)
    store = Store(settings.cache)
    store.ensure()  # once, before the threads
    cancel = threading.Event()
    with http.new_session(settings.jobs) as session, _display(settings) as track, \
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
    if not errors:
        return [f.result() for f in futures]
    for extra in errors[1:]:
        log(f"Also failed: {extra}")
    if isinstance(errors[0], CompatError) and len(errors) > 1:
        raise type(errors[0])(f"{errors[0]} (and {len(errors) - 1} more failed)") from None
    raise errors[0]


def summary(fetched: Sequence[Fetched]) -> str:
    """One line for a task to print: "3 files: 1 downloaded (2.1 MB), 2 cached"."""
    new = [f for f in fetched if f.action == "downloaded"]
    size = f" ({decimal(sum(f.path.stat().st_size for f in new))})" if new else ""
    return (f"{len(fetched)} file{'s' * (len(fetched) != 1)}: {len(new)} downloaded{size}, "
            f"{len(fetched) - len(new)} cached")


def _check_name(lock: Lockfile, only: str) -> None:
    groups = {"artifacts": [a.name for a in lock.artifacts], "keys": [k.name for k in lock.keys],
              "rpms": [r.name for r in lock.rpms]}
    if not any(only in names for names in groups.values()):
        have = "; ".join(f"{kind}: {', '.join(n)}" for kind, n in groups.items() if n)
        raise LockfileError(f"{lock.path.name}: no artifact, key or rpm '{only}' "
                            f"(have {have or 'nothing'})")


@contextmanager
def _display(settings: Settings) -> Iterator[Callable[[Resource], Progress | None]]:
    """Rich progress bars on stderr: ``progress`` "auto" draws them on a terminal only,
    "always" also into a pipe or a log file (rich would draw nothing there), "never" never."""
    if settings.progress == "never" or (settings.progress != "always" and not sys.stderr.isatty()):
        yield lambda _resource: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, TaskID, TextColumn, TransferSpeedColumn
    from rich.progress import Progress as Bars

    bars = Bars(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                TransferSpeedColumn(), transient=True,
                console=Console(stderr=True, force_terminal=settings.progress == "always" or None))

    def track(resource: Resource) -> Progress:
        task: list[TaskID] = []

        def update(done: int, total: int | None) -> None:
            if not task:  # made on the first byte, so a cached file never shows a bar
                task.append(bars.add_task(resource.label, total=total))
            bars.update(task[0], completed=done, total=total)
        return update

    with bars:
        yield track
