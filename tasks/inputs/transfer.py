"""Bring one ``.part`` to a complete file from a list of URLs: bounded, interruptible, private.

:class:`Transfer` is what :func:`tasks.inputs.download.fetch` runs under the resource's lock:

- every URL in turn (the primary, then its ``alt_urls``), each after a network error, a
  hash mismatch (the bad bytes are quarantined first) or a body too large; when all fail,
  the error names each URL's failure;
- never more than the resource's :attr:`~tasks.inputs.lockfile.Resource.max_bytes`, or
  for a pinned file without a pinned size the download cap (``max_download``, config
  ``compatbuild.max_download``): a ``Content-Length`` above it is refused before a byte is
  written, a longer body stops there; a ``file://`` URL must name a regular file (not a
  FIFO, not ``/dev/zero``);
- an overall deadline per URL (retries included) on top of the per-read timeout, so a
  server dripping a byte now and then ends too; a :class:`tasks.inputs.http.Stop` ends
  a blocked read at once;
- the ``.part`` is made 0600 and its final mode is never wider than its source's (a
  root-only ``file://`` source stays private in the cache); on a full disk it is removed,
  so it does not hold the space the next download needs.
"""

from __future__ import annotations

import errno
import hashlib
import os
import queue
import stat
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse
from urllib.request import url2pathname

from tasks.errors import CompatError, DownloadError, HashMismatch, SizeError
from tasks.inputs import http
from tasks.inputs.lockfile import DOWNLOAD_MAX, Resource
from tasks.store import Store

if TYPE_CHECKING:
    import requests

CHUNK = http.CHUNK
Progress = Callable[[int, int | None], None]  # (bytes so far, total bytes when known)
Log = Callable[[str], None]
_UMASK = os.umask(0o022)
os.umask(_UMASK)  # read once, at import, before any thread: os.umask can only be read by setting it
_FULL = (errno.ENOSPC, errno.EDQUOT)


class Fatal(Exception):  # noqa: N818 - a signal, re-raised as DownloadError by the caller
    """A failure no other URL can cure: the local disk, or an interrupt."""


@dataclass
class Transfer:
    """Bring ``part`` to a complete copy of ``resource`` from the first URL that serves it."""

    resource: Resource
    store: Store
    part: Path
    session: requests.Session
    progress: Progress | None
    say: Log
    stop: threading.Event | None
    deadline: float = http.DEADLINE
    max_download: int = DOWNLOAD_MAX  # the cap on a pinned file without a pinned size
    mode: int = field(default=0o666 & ~_UMASK, init=False)

    @property
    def limit(self) -> int:
        """The most bytes this download may bring (every download is bounded)."""
        pinned = self.resource.max_bytes
        return self.max_download if pinned is None else pinned

    def first_that_works(self, urls: list[str]) -> tuple[str, str, int]:
        """(url, sha256, size) of the first URL whose bytes match the pin; else each URL's error."""
        label, failures = self.resource.label, list[CompatError]()
        for i, url in enumerate(urls):
            self.say(f"Downloading {label} ({url})")
            try:
                sha, size = self._one(url)
                if self.resource.sha256 and sha != self.resource.sha256:
                    raise HashMismatch(f"sha256 mismatch for {url}: expected {self.resource.sha256}, "
                                       f"got {sha}; {self._set_aside()}")
                return url, sha, size
            except (Fatal, http.Interrupted) as exc:
                raise DownloadError(f"{label}: {exc}") from None
            except (DownloadError, HashMismatch) as exc:
                failures.append(exc)
                if i + 1 < len(urls):
                    self.say(f"{label}: {exc}; trying the next URL")
        if len(failures) == 1:
            raise type(failures[0])(f"{label}: {failures[0]}")
        each = "; ".join(f"URL {n}: {exc}" for n, exc in enumerate(failures, 1))
        raise type(failures[0])(f"{label}: all {len(failures)} URLs failed: {each}")

    def _set_aside(self) -> str:
        try:
            return f"moved the file to {self.store.quarantine(self.part, self.resource.label)}"
        except OSError:
            self.part.unlink(missing_ok=True)
            return "deleted the file"

    def _one(self, url: str) -> tuple[str, int]:
        if urlparse(url).scheme == "file":
            return self.copy_file(url)
        until = time.monotonic() + self.deadline
        return http.with_retries(partial(self.attempt, url, until), what=self.resource.label,
                                 say=self.say, stop=self.stop, until=until)

    def attempt(self, url: str, until: float) -> tuple[str, int]:
        """One GET, resuming what the ``.part`` holds; (sha256, size) once it is complete."""
        h, offset = _hash_part(self.part)
        left = max(until - time.monotonic(), 0.001)
        connect, read = http.TIMEOUT
        try:
            body = http.open_from(self.session, url, offset, timeout=(min(connect, left), min(read, left)))
        except http.RangeRefused:
            self.part.unlink(missing_ok=True)
            raise
        if body is None:  # the .part holds it all: killed between its last byte and adopt
            return h.hexdigest(), offset
        with body, self._guarded(body, until):
            self._check_length(body.total, url)
            if body.start == 0:  # a fresh start, or a server that ignored our Range
                h, mode = hashlib.sha256(), "wb"
            else:
                mode = "ab"
            got = self.write(body.chunks(), mode, h, body.start, body.total)
        if time.monotonic() >= until:
            raise DownloadError(f"{url} took longer than the {self.deadline:g} s deadline "
                                f"({got} bytes held, kept for the next run)")
        body.check(got)
        return h.hexdigest(), got

    class _Guard:
        def __init__(self, stop: threading.Event | None, body: http.Body, until: float) -> None:
            self.stop, self.body = stop, body
            self.timer = threading.Timer(max(until - time.monotonic(), 0.0), body.abort)
            self.timer.daemon = True

        def __enter__(self) -> None:
            if isinstance(self.stop, http.Stop):
                self.stop.watch(self.body)
            self.timer.start()

        def __exit__(self, *exc: object) -> None:
            self.timer.cancel()
            if isinstance(self.stop, http.Stop):
                self.stop.unwatch(self.body)

    def _guarded(self, body: http.Body, until: float) -> Transfer._Guard:
        """Shut ``body`` down at the deadline or when ``stop`` is set, whatever the read is doing."""
        return Transfer._Guard(self.stop, body, until)

    def _check_length(self, total: int | None, url: str) -> None:
        if total is not None and total > self.limit:
            self.part.unlink(missing_ok=True)
            raise SizeError(f"{url} announces {total} bytes, more than the {self._limit_text()}; "
                            "refused before writing it")

    def _limit_text(self) -> str:
        r = self.resource
        if r.size is not None:
            return f"{r.size} bytes the lockfile pins"
        if r.max_bytes is None:
            return (f"{self.limit}-byte cap on a download without a pinned size "
                    "(config compatbuild.max_download)")
        return f"{r.max_bytes} bytes allowed for an {'unpinned ' if not r.sha256 else ''}file without a pinned size"

    def copy_file(self, url: str) -> tuple[str, int]:
        """Copy a ``file://`` URL the same way: a regular file only, hashed while written,
        its mode bits the most the cache copy gets."""
        src = Path(url2pathname(urlparse(url).path))
        try:
            fd = os.open(src, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)  # a FIFO must not block the open
        except OSError as exc:
            raise DownloadError(f"cannot read {src}: {exc.strerror or exc}") from None
        st = os.fstat(fd)  # before fdopen, which refuses a directory with a bare IsADirectoryError
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            kind = "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file (a FIFO or a device has no end)"
            raise SizeError(f"{src} is {kind}; a file:// URL must name a regular file")
        with os.fdopen(fd, "rb") as f:
            self._check_length(st.st_size, url)
            self.mode = _at_most(st, self.part.parent)
            try:
                got = self.write(iter(lambda: f.read(CHUNK), b""), "wb", h := hashlib.sha256(), 0, st.st_size)
            except Fatal:
                raise
            except OSError as exc:
                raise DownloadError(f"cannot read {src}: {exc.strerror or exc}") from None
        return h.hexdigest(), got

    def write(self, chunks: Iterator[bytes], mode: str, h: hashlib._Hash, got: int,
              whole: int | None) -> int:
        """Append ``chunks`` to the ``.part`` and ``h``; return the bytes the ``.part`` holds.

        Hashing runs in its own thread (hashlib releases the GIL) while this one reads the
        socket and writes the file. No fsync: a kill cannot lose page-cache bytes, and after
        a power loss ``verify`` re-hashes any file whose size or times changed. Only a local
        disk error, an interrupt or a body over the limit raise here: a network error ends
        ``chunks``, and the caller judges it by the bytes held.
        """
        limit = self.limit
        try:
            flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if mode == "wb" else os.O_APPEND)
            with os.fdopen(os.open(self.part, flags, 0o600), "wb") as f, _Sink(h.update) as hasher:
                for chunk in chunks:
                    if got + len(chunk) > limit:
                        f.close()
                        self.part.unlink(missing_ok=True)
                        raise SizeError(f"the body is longer than the {self._limit_text()}; "
                                        "stopped there and removed the partial download")
                    hasher.put(chunk)
                    f.write(chunk)
                    got += len(chunk)
                    if self.progress:
                        self.progress(got, whole)
                    if self.stop is not None and self.stop.is_set():
                        raise Fatal("interrupted")
                if self.stop is not None and self.stop.is_set():
                    raise Fatal("interrupted")
        except OSError as exc:
            if exc.errno in _FULL:  # the .part would hold the space every later download needs
                self.part.unlink(missing_ok=True)
                raise Fatal(f"{disk_text(self.part, exc)}; removed the partial download") from None
            raise Fatal(disk_text(self.part, exc)) from None
        return got


def _at_most(src: os.stat_result, dest_dir: Path) -> int:
    """The cache copy's mode: the usual one, narrowed to the source's bits; its group bits
    only when the copy's group (the folder's, or ours) is the source's."""
    mode = 0o666 & ~_UMASK & stat.S_IMODE(src.st_mode)
    try:
        group = dest_dir.stat().st_gid if dest_dir.stat().st_mode & stat.S_ISGID else os.getegid()
    except OSError:
        group = os.getegid()
    return mode if group == src.st_gid else mode & ~0o070


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
        raise Fatal(disk_text(part, exc)) from None
    return hashlib.sha256(), 0


def disk_text(path: Path, exc: BaseException) -> str:
    """One line for a local disk error, naming the file."""
    if isinstance(exc, OSError):
        return f"cannot write {exc.filename or path}: {exc.strerror or exc}"
    return str(exc)
