"""The content-addressed cache: ``<root>/sha256/ab/<hex>``, and nothing half-written in it.

Layout under the cache root (``COMPATBUILD_CACHE`` or invoke config moves it)::

    CACHEDIR.TAG          marks the tree as a cache for backup tools
    sha256/ab/<hex>       complete files, named by the sha256 of their bytes
    urls/<key>.json       url -> sha256 for files the lockfile does not pin (signatures)
    partial/<key>.part    bytes of an interrupted download, resumed with a Range request
    locks/<key>.lock      one filelock per URL or output
    verified/<key>.json   stamps of successful verifications
    quarantine/           files that failed their hash, moved aside, never used: the newest
                          one per label, at most QUARANTINE_KEEP in all (older ones removed)

A file reaches ``sha256/`` only by ``os.replace`` after its hash was checked.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tasks.atomic import file_lock, write_atomic
from tasks.errors import OutputError

if TYPE_CHECKING:
    import filelock

CHUNK = 1 << 20
QUARANTINE_KEEP = 8  # files kept in quarantine/: a failing mirror must not fill the disk
_TAG = (
    "Signature: 8a477f597d28d172789f06886806bc55\n"
    "# This file is a cache directory tag created by compatbuild.\n"
    "# For information about cache directory tags see https://bford.info/cachedir/\n"
)


def sha256_file(path: Path) -> str:
    """Stream a file through sha256."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def identity(st: os.stat_result) -> list[int]:
    """What every re-check keys a file on instead of re-hashing it: size, mtime, ctime, inode
    and device. An edit in place changes the ctime even when the mtime is put back (``touch
    -d``, ``os.utime``), and a file replaced by another has a new inode; size and mtime alone
    prove nothing. Verify's stamps, the RPM signature stamps, the zig install's manifest and
    the build's source table all use this one key.
    """
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev]


def file_identity(path: str | os.PathLike[str]) -> list[int]:
    """:func:`identity` of the file at ``path`` (links followed)."""
    return identity(os.stat(path))


def key_of(text: str) -> str:
    """A stable file-name-safe key for a URL or any string."""
    return hashlib.sha256(text.encode()).hexdigest()


def digest_of(material: Any) -> str:
    """The cache key of a JSON-able value: sha256 of its canonical JSON (keys sorted).

    Every cache key made of several inputs (stage tags, verify stamps, fetch stamps, smoke
    verdicts) is this one function of a dict or list of them.
    """
    return key_of(json.dumps(material, sort_keys=True))


class Store:
    """A content-addressed file store rooted at ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def ensure(self) -> None:
        try:
            for sub in ("sha256", "urls", "partial", "locks", "verified", "quarantine"):
                (self.root / sub).mkdir(parents=True, exist_ok=True)
            tag = self.root / "CACHEDIR.TAG"
            if not tag.exists():
                write_atomic(tag, _TAG.encode())
        except OSError as exc:
            raise OutputError(f"cache {self.root}: {exc.strerror or exc}") from None

    def path(self, sha256: str) -> Path:
        return self.root / "sha256" / sha256[:2] / sha256

    def has(self, sha256: str) -> bool:
        return self.path(sha256).is_file()

    def partial(self, url: str) -> Path:
        return self.root / "partial" / f"{key_of(url)}.part"

    def file_lock(self, name: str) -> filelock.BaseFileLock:
        """The cross-process lock ``locks/<key>.lock`` of ``name``, not yet held (:func:`tasks.atomic.file_lock`)."""
        return file_lock(self.root / "locks" / f"{key_of(name)[:32]}.lock")

    @contextmanager
    def lock(self, name: str, timeout: float = -1) -> Iterator[None]:
        """Hold the cross-process lock ``locks/<key>.lock``."""
        self.ensure()
        with self.file_lock(name).acquire(timeout=timeout):
            yield

    def url_hash(self, url: str) -> str | None:
        """The sha256 recorded for an unpinned URL, if its bytes are still cached."""
        try:
            data = json.loads((self.root / "urls" / f"{key_of(url)}.json").read_text())
        except (OSError, ValueError):
            return None
        sha = data.get("sha256")
        return sha if isinstance(sha, str) and self.has(sha) else None

    def forget_url(self, url: str) -> None:
        """Drop the record of an unpinned URL, so the next download fetches it again."""
        (self.root / "urls" / f"{key_of(url)}.json").unlink(missing_ok=True)

    def record_url(self, url: str, sha256: str, size: int) -> None:
        entry = {"url": url, "sha256": sha256, "size": size}
        path = self.root / "urls" / f"{key_of(url)}.json"
        try:
            write_atomic(path, json.dumps(entry).encode())
        except OSError as exc:  # a write's ENOSPC names no file: name the one we were writing
            raise OSError(exc.errno, exc.strerror, str(exc.filename or path)) from None

    def adopt(self, tmp: Path, sha256: str) -> Path:
        """Move a fully verified temporary file into place under its hash."""
        dest = self.path(sha256)
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, dest)
        return dest

    def quarantine(self, tmp: Path, label: str) -> Path:
        """Move a file that failed its check aside, where nothing will use it.

        Only the newest file per ``label`` is kept, and at most :data:`QUARANTINE_KEEP` in
        all: a mirror serving bad bytes on every run adds no copy after the first.
        """
        folder = self.root / "quarantine"
        tag = key_of(label)[:12]
        dest = folder / f"{time.time_ns()}-{tag}-{tmp.name}"
        folder.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, dest)
        kept = sorted((p for p in folder.iterdir() if p.is_file() and p != dest),
                      key=lambda p: p.name, reverse=True)
        same = [p for p in kept if p.name.split("-")[1:2] == [tag]]
        others = [p for p in kept if p not in same]
        for old in same + others[max(QUARANTINE_KEEP - 1, 0):]:
            old.unlink(missing_ok=True)
        return dest

    def stamp(self, material: dict[str, Any]) -> Path:
        return self.root / "verified" / f"{digest_of(material)}.json"

