"""An old glibc unpacked into a directory: a sysroot to compile against and to run under.

``make_sysroot`` unpacks the target's pinned glibc RPMs (Fedora layout: ``lib64``,
``usr/lib64``) with :mod:`rpmfile`; ``make_sysroot_from_debs`` unpacks Debian packages
(multiarch layout: ``lib/x86_64-linux-gnu``, or ``lib/aarch64-linux-gnu`` for arm64) with a
tiny ar reader and :mod:`tarfile`.
Either way every member is written as if chrooted to the sysroot
(:mod:`tasks.dlopen.sysroot_tree`): names and link targets are resolved inside it, following
the links already written as its own, and links are rewritten relative, so nothing inside it
points back at the host (``libdl.so -> /lib/x86_64-linux-gnu/libdl.so.2``, or a link whose
parent folders are links: ``a/b -> /``, then ``a/b/a/b/usr -> /usr``). Members are streamed
CHUNK bytes at a time, never read whole (a 1.5 GB member costs no 1.5 GB of memory), and
each archive may write at most 64 x its size, at least 16 MiB
(:meth:`~tasks.dlopen.sysroot_tree.Tree.budget`): a 1.5 MB RPM that inflates to 1.4 GB is
refused after ~96 MB.

The tree is built beside ``dest`` in ``.<dest>.part`` and moved into place with
``os.replace``; a half-made tree is removed on any error. A stamp inside records the
inputs, so a second call with the same inputs returns at once and says nothing.
"""

from __future__ import annotations

import io
import re
import stat
import tarfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO

from tasks.atomic import ensure_dir
from tasks.dlopen.sysroot_tree import CHUNK
from tasks.dlopen.sysroot_tree import Tree as _Tree
from tasks.errors import CompatError, LockfileError, NotDownloaded, OutputError, SysrootError
from tasks.inputs import rpmsig
from tasks.inputs.lockfile import Lockfile, Rpm
from tasks.store import Store, sha256_file

DEFAULT_RPMS = ("glibc", "glibc-devel", "glibc-headers", "kernel-headers", "libgcc")
STAMP = ".compatbuild-sysroot.json"
MAX_NAME = 4096  # PATH_MAX: longer member names or link targets are refused
_RPM_NAME = re.compile(r"^(?P<name>.+)-[^-]+-[^-]+\.[^.]+\.rpm$")
Log = Callable[[str], None]


def make_sysroot(
    lock: Lockfile,
    store: Store,
    dest: Path,
    *,
    packages: Sequence[str] = DEFAULT_RPMS,
    log: Log = print,
) -> Path:
    """Unpack the lockfile's pinned ``packages`` RPMs into ``dest``; return ``dest``.

    Each RPM's signature is checked first against the target's ``rpm_key``
    (:func:`tasks.inputs.rpmsig.check_rpms`; a stamp makes a re-check free).
    """
    pins = _select_rpms(lock, packages)
    files: list[Path] = []
    for r in pins:
        path = store.path(r.sha256)
        if not path.is_file():
            raise NotDownloaded(f"rpm {r.filename} is not in the cache; run `invoke download`")
        files.append(path)
    rpmsig.check_rpms(lock, store, pins, log=log)  # signed by the target's pinned rpm_key
    material = {"kind": "rpm", "inputs": [[r.filename, r.sha256] for r in pins]}

    def fill(tree: _Tree) -> None:
        for r, path in zip(pins, files, strict=True):
            _unpack_rpm(path, tree, r.filename)

    return _build(dest, material, fill, log, f"glibc {lock.target.glibc} from {len(pins)} RPMs")


def make_sysroot_from_debs(debs: Sequence[Path], dest: Path, *, log: Log = print) -> Path:
    """Unpack Debian ``.deb`` files (their data.tar) into ``dest``; return ``dest``."""
    if not debs:
        raise SysrootError("make_sysroot_from_debs: no .deb files given")
    material = {"kind": "deb", "inputs": [[Path(d).name, sha256_file(Path(d))] for d in debs]}

    def fill(tree: _Tree) -> None:
        for deb in debs:
            _unpack_deb(Path(deb), tree)

    return _build(dest, material, fill, log, f"{len(debs)} .deb files")


def _select_rpms(lock: Lockfile, packages: Sequence[str]) -> list[Rpm]:
    by_name: dict[str, Rpm] = {}
    for r in lock.rpms:
        m = _RPM_NAME.match(r.filename)
        for name in {r.name, m.group("name") if m else r.name}:
            by_name.setdefault(name, r)
    if "glibc" in packages and "glibc" not in by_name:
        raise LockfileError(
            f"{lock.path.name} pins no glibc RPM; run `invoke rpms --refresh` first"
        )
    missing = [p for p in packages if p not in by_name]
    if missing:
        raise LockfileError(
            f"{lock.path.name} pins no RPM for {', '.join(missing)}; "
            "run `invoke rpms --refresh` first"
        )
    return [by_name[p] for p in packages]


# ----------------------------------------------------------------------------- atomic build


def _build(dest: Path, material: Mapping[str, object], fill: Callable[[_Tree], None], log: Log,
           what: str) -> Path:
    dest = dest.expanduser().resolve()
    try:
        ensure_dir(dest, material, lambda tmp: fill(_Tree(tmp)), stamp_name=STAMP,
                   before=lambda: log(f"Making sysroot {dest} from {what}"))
    except OSError as exc:
        raise OutputError(f"sysroot {dest}: {exc.strerror or exc}") from None
    return dest


# ----------------------------------------------------------------------------- rpm


def _unpack_rpm(path: Path, tree: _Tree, label: str) -> None:
    """Unpack the RPM's payload; rpmfile opens and decompresses it, we read the cpio once.

    (rpmfile's own extractfile seeks back for every member, which re-decompresses an xz
    payload from its start: quadratic on glibc-headers' thousands of files.)
    """
    import rpmfile  # only the sysroot step needs it

    try:
        tree.budget(path.stat().st_size, label)
        with rpmfile.open(str(path)) as rpm:
            _unpack_cpio(rpm.data_file, tree, label)
    except CompatError:
        raise
    except Exception as exc:  # rpmfile raises bare Exceptions, lzma/zstd their own
        raise SysrootError(f"{label}: cannot unpack RPM: {exc}") from None


class _Member(io.RawIOBase):
    """The next ``size`` bytes of ``data``, read at most CHUNK at a time (never whole)."""

    def __init__(self, data: IO[bytes], size: int, label: str) -> None:
        self.data, self.left, self.label = data, size, label

    def readable(self) -> bool:
        return True

    def readinto(self, buf: bytearray | memoryview) -> int:  # type: ignore[override]
        want = min(len(buf), self.left, CHUNK)
        if want == 0:
            return 0
        chunk = self.data.read(want)
        if not chunk:
            raise SysrootError(f"{self.label}: truncated cpio payload")
        n = len(chunk)
        buf[:n] = chunk
        self.left -= n
        return n

    def skip(self) -> None:
        while self.read(CHUNK):
            pass


def _unpack_cpio(data: IO[bytes], tree: _Tree, label: str) -> None:
    """Read a newc ("070701") cpio stream sequentially into ``tree``, CHUNK bytes at a time."""
    offset = 0
    linked: dict[int, str] = {}  # inode -> name of the member that carried the data
    waiting: dict[int, list[str]] = {}  # inode -> hard links seen before their data

    def read(n: int) -> bytes:
        nonlocal offset
        chunk = data.read(n)
        if len(chunk) != n:
            raise SysrootError(f"{label}: truncated cpio payload")
        offset += n
        return chunk

    def pad() -> None:
        read(-offset % 4)

    while True:
        header = read(110)
        if header[:6] not in (b"070701", b"070702"):
            raise SysrootError(f"{label}: not a newc cpio payload")
        try:
            f = [int(header[6 + 8 * i: 14 + 8 * i], 16) for i in range(13)]
        except ValueError:
            raise SysrootError(f"{label}: corrupt cpio header") from None
        ino, mode, nlink, size, namesize = f[0], f[1], f[4], f[6], f[11]
        if namesize > MAX_NAME:
            raise SysrootError(f"{label}: cpio member name of {namesize} bytes")
        name = read(namesize)[:-1].decode("utf-8", "surrogateescape")
        pad()
        if name == "TRAILER!!!":
            return
        body = _Member(data, size, label)
        if stat.S_ISLNK(mode):
            if size > MAX_NAME:
                raise SysrootError(f"{label}: link {name!r} has a {size}-byte target")
            tree.symlink(name, body.readall().decode("utf-8", "surrogateescape"))
        elif stat.S_ISDIR(mode):
            tree.directory(name)
        elif stat.S_ISREG(mode):
            if nlink > 1 and size == 0 and ino not in linked:
                waiting.setdefault(ino, []).append(name)
            elif nlink > 1 and ino in linked:
                tree.hardlink(name, linked[ino])
            else:
                tree.file(name, io.BufferedReader(body, CHUNK), mode)
                if nlink > 1:
                    linked[ino] = name
                    for other in waiting.pop(ino, []):
                        tree.hardlink(other, name)
        body.skip()  # whatever the member did not use (a device's, a directory's bytes)
        offset += size
        pad()


# ----------------------------------------------------------------------------- deb


def _ar_members(f: IO[bytes], label: str) -> Iterator[tuple[str, int]]:
    """(name, size) of each member of an ar archive, leaving ``f`` at its data."""
    if f.read(8) != b"!<arch>\n":
        raise SysrootError(f"{label}: not a .deb (ar) archive")
    while header := f.read(60):
        if len(header) < 60 or header[58:60] != b"`\n":
            raise SysrootError(f"{label}: truncated or corrupt ar header")
        name = header[0:16].decode("ascii", "replace").strip().rstrip("/")
        size = int(header[48:58].decode("ascii").strip())
        start = f.tell()
        yield name, size
        f.seek(start + size + (size & 1))


def _unpack_deb(path: Path, tree: _Tree) -> None:
    try:
        tree.budget(path.stat().st_size, path.name)
        with path.open("rb") as f:
            for name, size in _ar_members(f, path.name):
                if not name.startswith("data.tar"):
                    continue
                if name.endswith(".zst"):
                    raise SysrootError(f"{path.name}: data.tar.zst is not supported; use dpkg-deb")
                payload = io.BufferedReader(_Member(f, size, path.name), CHUNK)
                with tarfile.open(fileobj=payload, mode="r|*") as tar:  # streamed, not read whole
                    _unpack_tar(tar, tree)
                return
    except (OSError, tarfile.TarError, ValueError) as exc:
        raise SysrootError(f"{path.name}: cannot unpack .deb: {exc}") from None
    raise SysrootError(f"{path.name}: no data.tar member; not a .deb")


def _unpack_tar(tar: tarfile.TarFile, tree: _Tree) -> None:
    for m in tar:
        if m.isdir():
            tree.directory(m.name)
        elif m.issym():
            tree.symlink(m.name, m.linkname)
        elif m.islnk():
            tree.hardlink(m.name, m.linkname)
        elif m.isfile():
            data = tar.extractfile(m)
            if data is not None:
                tree.file(m.name, data, m.mode)

