"""Fetch lockfile resources into the content-addressed store: resumable, verified, parallel.

One resource: lock (per URL) → check the store → stream into ``partial/<key>.part`` while
hashing the raw bytes received → verify → ``os.replace`` under ``sha256/``. A broken transfer
leaves only the ``.part``; the next attempt, or the next run after a ``kill -9``, hashes what
it holds and asks for the rest with ``Range: bytes=N-``. The HTTP side (timeouts, backoff on
5xx and lost connections, never a retry on a 4xx, Range) is :mod:`tasks.inputs.http`; one
file's transfer (size bounds, deadline, alternates, modes) is :mod:`tasks.inputs.transfer`.

:func:`fetch_all` returns what it did (a :class:`Fetched` per file, "cached" or
"downloaded") and says only "Downloading ..." as it works; :func:`summary` is the line a
task prints after it.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tasks.errors import CompatError, DownloadError, LockfileError, LockTimeout
from tasks.inputs import http
from tasks.inputs.lockfile import DOWNLOAD_MAX, Lockfile, Resource
from tasks.inputs.transfer import Fatal, Progress, Transfer, disk_text
from tasks.inputs.urls import redact
from tasks.settings import Settings
from tasks.store import Store

if TYPE_CHECKING:  # filelock, requests and rich are imported where they are used
    import filelock
    import requests

Log = Callable[[str], None]
LOCK_POLL = 0.2  # seconds between tries at a lock another process holds
LOCK_GRACE = 30.0  # seconds waited for a lock beyond the holder's own deadlines


@dataclass(frozen=True)
class Fetched:
    """A resource whose bytes are in the store: ``action`` is "cached" or "downloaded"."""

    resource: Resource
    path: Path
    sha256: str
    action: str


def _identity(url: str) -> str:
    return url


def _quiet(_message: str) -> None:
    pass


def fetch(resource: Resource, store: Store, *, mirror: Callable[[str], str] = _identity,
          session: requests.Session | None = None, progress: Progress | None = None,
          log: Log = _quiet, cancel: threading.Event | None = None,
          deadline: float | None = None, max_download: int = DOWNLOAD_MAX) -> Fetched:
    """Put ``resource`` in ``store`` unless it is there; log "Downloading" only when fetching.

    ``deadline`` bounds each URL's transfer, retries included (default
    :data:`tasks.inputs.http.DEADLINE`); waiting for another process's lock on the same
    URL is bounded by the deadline of every URL it may try. ``max_download`` bounds a
    pinned file without a pinned size (a size pin, or the small caps of unpinned files,
    bound the others). No message or log line shows a URL's credentials.
    """
    def say(message: str) -> None:
        log(redact(message))

    try:
        return _fetch(resource, store, mirror, session, progress, say, cancel,
                      http.DEADLINE if deadline is None else deadline, max_download)
    except CompatError as exc:
        raise type(exc)(redact(str(exc))) from None


def _fetch(resource: Resource, store: Store, mirror: Callable[[str], str], session: requests.Session | None,
           progress: Progress | None, say: Log, cancel: threading.Event | None, deadline: float,
           max_download: int) -> Fetched:
    if found := _cached(resource, store):
        return found
    import filelock  # after the cached answer: a run with everything in the store takes no lock

    urls = list(dict.fromkeys(mirror(u) for u in (resource.url, *resource.alt_urls)))
    with ExitStack() as stack:
        try:
            store.ensure()
            lock = store.file_lock(resource.url)
            stack.enter_context(_acquired(lock, resource, say, cancel, deadline * len(urls) + LOCK_GRACE))
        except (OSError, filelock.Timeout) as exc:
            raise DownloadError(f"{resource.label}: {disk_text(store.root, exc)}") from None
        except CompatError as exc:
            if isinstance(exc, LockTimeout):
                raise
            raise DownloadError(f"{resource.label}: {exc}") from None
        if found := _cached(resource, store):  # another process finished it while we waited
            return found
        session = session or stack.enter_context(http.new_session(1))
        part = store.partial(resource.url)  # one .part per resource, resumable from any mirror
        job = Transfer(resource, store, part, session, progress, say, cancel, deadline, max_download)
        _url, sha, size = job.first_that_works(urls)
        try:
            os.chmod(part, job.mode)  # made 0600; never wider than a file:// source
            path = store.adopt(part, sha)
            if not resource.sha256:
                store.record_url(resource.url, sha, size)
        except OSError as exc:
            raise DownloadError(f"{resource.label}: {disk_text(store.root, exc)}") from None
        return Fetched(resource, path, sha, "downloaded")
    raise AssertionError("unreachable")  # for mypy: an ExitStack could swallow exceptions


@contextmanager
def _acquired(lock: filelock.BaseFileLock, resource: Resource, say: Log, stop: threading.Event | None,
              wait: float) -> Iterator[None]:
    """Hold ``lock``; when another process holds it, say so once and wait at most ``wait`` s,
    in short tries, so an interrupt or ``stop`` ends the wait at once."""
    import filelock

    try:
        lock.acquire(timeout=0)
    except filelock.Timeout:
        say(f"Waiting for another process downloading {resource.label} ({resource.url}); "
            f"giving up after {wait:g} s")
        end = time.monotonic() + wait
        while True:
            if stop is not None and stop.is_set():
                raise Fatal("interrupted") from None
            try:
                lock.acquire(timeout=min(LOCK_POLL, max(end - time.monotonic(), 0)))
                break
            except filelock.Timeout:
                if time.monotonic() >= end:
                    raise LockTimeout(f"{resource.label}: another process has held the download lock "
                                      f"{lock.lock_file} for over {wait:g} s; gave up waiting") from None
    try:
        yield
    finally:
        lock.release()


def _cached(resource: Resource, store: Store) -> Fetched | None:
    if resource.sha256:
        sha = resource.sha256 if store.has(resource.sha256) else None
    else:
        sha = store.url_hash(resource.url)
    return Fetched(resource, store.path(sha), sha, "cached") if sha else None


def fetch_all(lock: Lockfile, settings: Settings, *, only: str | None = None,
              log: Log = print) -> list[Fetched]:
    """Fetch every resource (or one name's) a few at a time; return what was done to each.

    Logs "Downloading ..." for each file fetched, nothing for a cached one, each message a
    whole line however many threads log at once. Failures let the other files finish; then
    each is logged but the first, which is raised. Ctrl-C stops every transfer at once,
    even a read blocked on a stalled server: the workers are daemon threads whose sockets
    are shut down, so the interrupt is raised within a second.
    """
    if only is not None:
        _check_name(lock, only)
    by_url: dict[str, Resource] = {}
    for r in lock.resources(only):
        by_url.setdefault(r.url, r)
    store = Store(settings.cache)
    done: dict[int, Fetched | BaseException] = {}
    todo: list[tuple[int, Resource]] = []
    for i, r in enumerate(by_url.values()):
        if found := _cached(r, store):  # in the store: no session (requests' import alone is ~0.1 s), no threads
            done[i] = found
        else:
            todo.append((i, r))
    if todo:
        _fetch_missing(todo, done, store, settings, log)
    results = [done[i] for i in range(len(by_url))]
    errors = [e for e in results if isinstance(e, BaseException)]
    if not errors:
        return [f for f in results if isinstance(f, Fetched)]
    for extra in errors[1:]:
        log(f"Also failed: {extra}")
    if isinstance(errors[0], CompatError) and len(errors) > 1:
        raise type(errors[0])(f"{errors[0]} (and {len(errors) - 1} more failed)") from None
    raise errors[0]


def _fetch_missing(todo: list[tuple[int, Resource]], done: dict[int, Fetched | BaseException], store: Store,
                   settings: Settings, log: Log) -> None:
    """Fetch each ``(i, resource)`` of ``todo`` into ``done[i]`` (its Fetched, or what it raised),
    ``settings.jobs`` at a time on one session, with the progress display."""
    store.ensure()  # once, before the threads
    stop = http.Stop()
    lines = threading.Lock()

    def say(message: str) -> None:
        with lines:  # print writes the text and the newline apart: two threads interleave
            log(message)

    with http.new_session(settings.jobs) as session, _display(settings) as track:

        def work() -> None:
            while True:
                try:
                    i, r = todo.pop(0)
                except IndexError:
                    return
                try:
                    done[i] = fetch(r, store, mirror=settings.mirror, session=session, progress=track(r),
                                    log=say, cancel=stop, deadline=settings.deadline,
                                    max_download=settings.max_download)
                except BaseException as exc:  # noqa: B036 - handed to the main thread
                    done[i] = exc

        workers = [threading.Thread(target=work, daemon=True) for _ in range(min(settings.jobs, len(todo)))]
        try:
            for w in workers:
                w.start()
            for w in workers:
                while w.is_alive():
                    w.join(0.1)
        except KeyboardInterrupt:
            stop.set()
            end = time.monotonic() + 0.5  # let the workers close their files; never longer
            for w in workers:
                w.join(max(end - time.monotonic(), 0))
            raise


def summary(fetched: Sequence[Fetched]) -> str:
    """One line for a task to print: "3 files: 1 downloaded (2.1 MB), 2 cached"."""
    new = [f for f in fetched if f.action == "downloaded"]
    size = ""
    if new:  # rich only when there is a size to word: an all-cached run does not import it
        from rich.filesize import decimal

        size = f" ({decimal(sum(f.path.stat().st_size for f in new))})"
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
