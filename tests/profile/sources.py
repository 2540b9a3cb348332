"""Test-profile sources: pinned downloads, and a writer of reproducible tarballs.

:func:`fetch` downloads a :class:`Source` (Debian's make-dfsg tarballs) into a cache,
checked against its sha256 pin; :func:`cmake_wheel` gets CMake's PyPI wheel with pip, also
pinned. :class:`Tar` writes entries sorted, owned by root, at fixed mtimes and with a
name- and time-free gzip header, so a fixture made twice is the same bytes.
:class:`ProfileError` is the error of the whole test profile.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import lzma
import os
import subprocess
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from filelock import FileLock

from tasks.errors import CompatError, DownloadError, HashMismatch

DEBIAN_MIRROR = os.environ.get("COMPATBUILD_DEBIAN_MIRROR", "http://deb.debian.org/debian")
MAKE_VERSION = "4.4.1"
CMAKE_VERSION = "3.29.3"


class ProfileError(CompatError):
    """A test-profile input could not be made (missing tool, failed debootstrap, bad toolchain)."""


@dataclass(frozen=True)
class Source:
    """A file fetched from a reachable mirror, pinned by sha256."""

    url: str
    sha256: str

    @property
    def name(self) -> str:
        return self.url.rsplit("/", 1)[-1]


# sha256 values as listed in Debian's make-dfsg_4.4.1-2.dsc (Checksums-Sha256).
MAKE_ORIG = Source(
    f"{DEBIAN_MIRROR}/pool/main/m/make-dfsg/make-dfsg_4.4.1.orig.tar.xz",
    "3b16b00ea1079af9f8096bbc71ff7cc00c249fc6a862003da3c42308a0adb0fe",
)
MAKE_DEBIAN = Source(
    f"{DEBIAN_MIRROR}/pool/main/m/make-dfsg/make-dfsg_4.4.1-2.debian.tar.xz",
    "c785b80bd83b8294f104da43aee9573ba3e175e2e9a77ac00a49f0a569d6e061",
)
# sha256 of the wheel as served by PyPI (pip download, 2025); PyPI lists the same digest.
CMAKE_WHEEL = Source(
    "cmake-3.29.3-py3-none-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
    "c84eead2ea6f596fe5ac58beedbfc9bc1f460c410c481348b3783b4794f4b1a2",
)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fetch(source: Source, cache: Path) -> Path:
    """Return ``cache/<name>``, downloading it if absent; the sha256 must match the pin."""
    cache.mkdir(parents=True, exist_ok=True)
    dest = cache / source.name
    with FileLock(str(dest) + ".lock"):
        if dest.exists() and sha256_file(dest) == source.sha256:
            return dest
        print(f"Downloading {source.url}")
        part = dest.with_name(dest.name + ".part")
        digest = hashlib.sha256()
        try:
            with urllib.request.urlopen(source.url, timeout=60) as response, part.open("wb") as f:
                for chunk in iter(lambda: response.read(1 << 16), b""):
                    digest.update(chunk)
                    f.write(chunk)
        except (OSError, urllib.error.URLError) as exc:
            part.unlink(missing_ok=True)
            raise DownloadError(f"{source.url}: {exc}") from exc
        if digest.hexdigest() != source.sha256:
            part.unlink()
            raise HashMismatch(
                f"{source.url}: expected sha256 {source.sha256}, got {digest.hexdigest()}; removed {part}"
            )
        os.replace(part, dest)
    return dest


def cmake_wheel(cache: Path) -> Path:
    """The cmake 3.29.3 manylinux2014 wheel from PyPI, cached and checked against its pin."""
    cache.mkdir(parents=True, exist_ok=True)
    dest = cache / CMAKE_WHEEL.name
    with FileLock(str(dest) + ".lock"):
        if not (dest.exists() and sha256_file(dest) == CMAKE_WHEEL.sha256):
            print(f"Downloading {CMAKE_WHEEL.name} with pip")
            with tempfile.TemporaryDirectory(dir=cache) as tmp:
                done = subprocess.run(
                    [
                        sys.executable,
                        "-m",
                        "pip",
                        "download",
                        "--quiet",
                        "--no-deps",
                        "--only-binary=:all:",
                        "--platform",
                        "manylinux2014_x86_64",
                        "--dest",
                        tmp,
                        f"cmake=={CMAKE_VERSION}",
                    ],
                    check=False,
                )
                got = Path(tmp) / CMAKE_WHEEL.name
                if done.returncode != 0 or not got.exists():
                    raise DownloadError(
                        f"pip download cmake=={CMAKE_VERSION} did not produce {CMAKE_WHEEL.name}"
                    )
                if (digest := sha256_file(got)) != CMAKE_WHEEL.sha256:
                    raise HashMismatch(
                        f"{got.name}: expected sha256 {CMAKE_WHEEL.sha256}, got {digest}; removed it"
                    )
                os.replace(got, dest)
    return dest


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
        """Write the archive to ``dest`` through an adjacent ``.part`` file; return ``dest``."""
        for name in list(self._entries):
            parent = name.rpartition("/")[0]
            while parent and parent not in self._entries:
                self.dir(parent)
                parent = parent.rpartition("/")[0]
        dest.parent.mkdir(parents=True, exist_ok=True)
        part = dest.with_name(dest.name + ".part")
        try:
            with (
                _compressed(part, compression, level) as out,
                tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar,
            ):
                for name in sorted(self._entries):
                    info, data = self._entries[name]
                    if isinstance(data, Path):
                        with data.open("rb") as f:
                            tar.addfile(info, f)
                    elif data is not None:
                        tar.addfile(info, _BytesReader(data))
                    else:
                        tar.addfile(info)
            os.replace(part, dest)
        finally:
            part.unlink(missing_ok=True)
        return dest


class _BytesReader:
    def __init__(self, data: bytes) -> None:
        self._data, self._pos = data, 0

    def read(self, size: int = -1) -> bytes:
        end = len(self._data) if size < 0 else self._pos + size
        chunk, self._pos = self._data[self._pos : end], min(end, len(self._data))
        return chunk


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
