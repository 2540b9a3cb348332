"""Test-profile sources: pinned downloads, the texts in ``files/``, and a reproducible tar writer.

The profile's upstream inputs (Debian's make-dfsg tarballs, CMake's PyPI wheel) are
:class:`~tasks.inputs.lockfile.Resource` values fetched by the pipeline's own
:func:`tasks.inputs.download.fetch` into a :class:`~tasks.store.Store`: the same
content-addressed cache, with the pinned sha256 checked while the bytes arrive. The shell
scripts and CMake trees the profile packs are real files under ``files/`` beside this module
(:func:`text`). :class:`Tar` writes entries sorted, owned by root, at fixed mtimes and with
a name- and time-free gzip header, through :func:`tasks.atomic.staged`, so a fixture made
twice is the same bytes and a half-written one is never seen.
"""

from __future__ import annotations

import gzip
import io
import lzma
import os
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

from tasks.atomic import staged
from tasks.inputs import download
from tasks.inputs.lockfile import Resource, url_basename
from tasks.store import Store

DEBIAN_MIRROR = os.environ.get("COMPATBUILD_DEBIAN_MIRROR", "http://deb.debian.org/debian")
MAKE_VERSION = "4.4.1"
CMAKE_VERSION = "3.29.3"
FILES = Path(__file__).resolve().parent / "files"


def _pinned(label: str, url: str, sha256: str) -> Resource:
    return Resource(f"test profile {label}", url, url_basename(url), sha256)


# sha256 values as listed in Debian's make-dfsg_4.4.1-2.dsc (Checksums-Sha256).
MAKE_ORIG = _pinned(
    "make source",
    f"{DEBIAN_MIRROR}/pool/main/m/make-dfsg/make-dfsg_4.4.1.orig.tar.xz",
    "3b16b00ea1079af9f8096bbc71ff7cc00c249fc6a862003da3c42308a0adb0fe",
)
MAKE_DEBIAN = _pinned(
    "make Debian files",
    f"{DEBIAN_MIRROR}/pool/main/m/make-dfsg/make-dfsg_4.4.1-2.debian.tar.xz",
    "c785b80bd83b8294f104da43aee9573ba3e175e2e9a77ac00a49f0a569d6e061",
)
# The manylinux2014 wheel as PyPI serves it (URL and sha256 from pip's install report for
# cmake==3.29.3; PyPI's JSON API lists the same digest).
CMAKE_WHEEL = _pinned(
    "cmake wheel",
    "https://files.pythonhosted.org/packages/0f/6e/aec230302433cf697928be1311d783512dce582e39167c70a7581a21eb77/"
    "cmake-3.29.3-py3-none-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
    "c84eead2ea6f596fe5ac58beedbfc9bc1f460c410c481348b3783b4794f4b1a2",
)


def fetch(resource: Resource, store: Store) -> Path:
    """The store's copy of ``resource``, downloaded first when absent (says "Downloading" then)."""
    return download.fetch(resource, store, log=print).path


def text(rel: str) -> str:
    """The text of ``files/<rel>``, one of the scripts or CMake files the profile packs."""
    return (FILES / rel).read_text(encoding="utf-8")


def tree(rel: str) -> dict[str, bytes]:
    """Every file under ``files/<rel>``, keyed by its path relative to that folder."""
    top = FILES / rel
    return {p.relative_to(top).as_posix(): p.read_bytes() for p in sorted(top.rglob("*")) if p.is_file()}


class Tar:
    """Collects entries, then writes them sorted by name, owned by 0:0, at a fixed mtime."""

    def __init__(self) -> None:
        self._entries: dict[str, tuple[tarfile.TarInfo, bytes | Path | None]] = {}

    def _add(self, name: str, kind: bytes, mode: int, mtime: int) -> tarfile.TarInfo:
        info = tarfile.TarInfo(name.rstrip("/"))
        info.type, info.mode, info.mtime = kind, mode & 0o7777, mtime
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        return info

    def dir(self, name: str, mode: int = 0o755, mtime: int = 0) -> None:
        info = self._add(name, tarfile.DIRTYPE, mode, mtime)
        self._entries[info.name] = (info, None)

    def file(self, name: str, data: bytes | Path, mode: int = 0o644, mtime: int = 0) -> None:
        info = self._add(name, tarfile.REGTYPE, mode, mtime)
        info.size = data.stat().st_size if isinstance(data, Path) else len(data)
        self._entries[info.name] = (info, data)

    def symlink(self, name: str, target: str, mtime: int = 0) -> None:
        info = self._add(name, tarfile.SYMTYPE, 0o777, mtime)
        info.linkname = target
        self._entries[info.name] = (info, None)

    def write(self, dest: Path, *, compression: Literal["gz", "xz"], level: int) -> Path:
        """Write the archive to ``dest`` atomically (:func:`tasks.atomic.staged`); return ``dest``."""
        with staged(dest) as tmp:
            self.write_into(tmp, compression=compression, level=level)
        return dest

    def write_into(self, path: Path, *, compression: Literal["gz", "xz"], level: int) -> None:
        """Write the archive to ``path`` as it is (a temporary the caller makes visible)."""
        for name in list(self._entries):
            parent = name.rpartition("/")[0]
            while parent and parent not in self._entries:
                self.dir(parent)
                parent = parent.rpartition("/")[0]
        with (
            _compressed(path, compression, level) as out,
            tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar,
        ):
            for name in sorted(self._entries):
                info, data = self._entries[name]
                if isinstance(data, Path):
                    with data.open("rb") as f:
                        tar.addfile(info, f)
                elif data is not None:
                    tar.addfile(info, io.BytesIO(data))
                else:
                    tar.addfile(info)


@contextmanager
def _compressed(path: Path, compression: str, level: int) -> Iterator[io.BufferedIOBase]:
    with path.open("wb") as raw:
        if compression == "gz":
            # filename="" and mtime=0 keep the gzip header free of names and times.
            with gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=level, mtime=0) as gz:
                yield gz
        else:
            with lzma.LZMAFile(raw, mode="wb", preset=level) as xz:
                yield xz
