"""An old glibc unpacked into a directory: a sysroot to compile against and to run under.

``make_sysroot`` unpacks the target's pinned glibc RPMs (Fedora layout: ``lib64``,
``usr/lib64``) with :mod:`rpmfile`; ``make_sysroot_from_debs`` unpacks Debian packages
(multiarch layout: ``lib/x86_64-linux-gnu``) with a tiny ar reader and :mod:`tarfile`.
Either way absolute symlinks are rewritten relative to the sysroot, so nothing inside it
points back at the host's own glibc (``libdl.so -> /lib/x86_64-linux-gnu/libdl.so.2``).

The tree is built beside ``dest`` in ``.<dest>.part`` and moved into place with
``os.replace``; a half-made tree is removed on any error. A stamp inside records the
inputs, so a second call with the same inputs returns at once and says nothing.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import stat
import tarfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO

from tasks.atomic import ensure_dir
from tasks.errors import CompatError, LockfileError, NotDownloaded, OutputError, SysrootError
from tasks.inputs.lockfile import Lockfile, Rpm
from tasks.store import Store, sha256_file

DEFAULT_RPMS = ("glibc", "glibc-devel", "glibc-headers", "kernel-headers", "libgcc")
STAMP = ".compatbuild-sysroot.json"
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
    """Unpack the lockfile's pinned ``packages`` RPMs into ``dest``; return ``dest``."""
    pins = _select_rpms(lock, packages)
    files: list[Path] = []
    for r in pins:
        path = store.path(r.sha256)
        if not path.is_file():
            raise NotDownloaded(f"rpm {r.filename} is not in the cache; run `invoke download`")
        files.append(path)
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


class _Tree:
    """Writes archive members under ``root``: never outside it, absolute links made relative."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.real = os.path.realpath(root)

    def _path(self, name: str) -> Path:
        parts = [p for p in name.replace("\\", "/").split("/") if p not in ("", ".")]
        if ".." in parts:
            raise SysrootError(f"archive member {name!r} points outside the sysroot")
        if not parts:
            return self.root
        path = self.root.joinpath(*parts)
        parent = os.path.realpath(path.parent)
        if parent != self.real and not parent.startswith(self.real + os.sep):
            raise SysrootError(f"archive member {name!r} resolves outside the sysroot")
        return path

    def directory(self, name: str) -> None:
        path = self._path(name)
        if path.is_symlink():  # a usrmerge-style link already stands here
            return
        path.mkdir(parents=True, exist_ok=True)

    def file(self, name: str, data: IO[bytes], mode: int) -> None:
        path = self._path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_symlink() or path.exists():
            path.unlink()
        with path.open("wb") as out:
            shutil.copyfileobj(data, out)
        path.chmod((mode & 0o777) | 0o200)

    def symlink(self, name: str, target: str) -> None:
        path = self._path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        # Where the link points, as a path inside the sysroot, without following anything:
        # an absolute target is relative to the sysroot's root; neither may leave it.
        inside = os.path.normpath(
            "/" + target.lstrip("/") if target.startswith("/")
            else os.path.join("/", os.path.dirname(name.lstrip("./")), target)
        )
        if inside.startswith("/..") or not inside.startswith("/"):
            raise SysrootError(f"archive link {name!r} -> {target!r} points outside the sysroot")
        target = os.path.relpath(self.root / inside.lstrip("/"), path.parent)
        if path.is_symlink() or path.is_file():
            path.unlink()
        elif path.is_dir():
            return
        os.symlink(target, path)

    def hardlink(self, name: str, existing: str) -> None:
        path, source = self._path(name), self._path(existing)
        if source.is_symlink():
            raise SysrootError(f"archive hard link {name!r} -> {existing!r} names a symlink")
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_symlink() or path.exists():
            path.unlink()
        os.link(source, path, follow_symlinks=False)


# ----------------------------------------------------------------------------- rpm


def _unpack_rpm(path: Path, tree: _Tree, label: str) -> None:
    """Unpack the RPM's payload; rpmfile opens and decompresses it, we read the cpio once.

    (rpmfile's own extractfile seeks back for every member, which re-decompresses an xz
    payload from its start: quadratic on glibc-headers' thousands of files.)
    """
    import rpmfile  # only the sysroot step needs it

    try:
        with rpmfile.open(str(path)) as rpm:
            _unpack_cpio(rpm.data_file, tree, label)
    except CompatError:
        raise
    except Exception as exc:  # rpmfile raises bare Exceptions, lzma/zstd their own
        raise SysrootError(f"{label}: cannot unpack RPM: {exc}") from None


def _unpack_cpio(data: IO[bytes], tree: _Tree, label: str) -> None:
    """Read a newc ("070701") cpio stream sequentially into ``tree``."""
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
        f = [int(header[6 + 8 * i: 14 + 8 * i], 16) for i in range(13)]
        ino, mode, nlink, size, namesize = f[0], f[1], f[4], f[6], f[11]
        name = read(namesize)[:-1].decode("utf-8", "surrogateescape")
        pad()
        if name == "TRAILER!!!":
            return
        body = io.BytesIO(read(size))
        pad()
        if stat.S_ISDIR(mode):
            tree.directory(name)
        elif stat.S_ISLNK(mode):
            tree.symlink(name, body.getvalue().decode("utf-8", "surrogateescape"))
        elif stat.S_ISREG(mode):
            if nlink > 1 and size == 0 and ino not in linked:
                waiting.setdefault(ino, []).append(name)
                continue
            if nlink > 1 and ino in linked:
                tree.hardlink(name, linked[ino])
                continue
            tree.file(name, body, mode)
            if nlink > 1:
                linked[ino] = name
                for other in waiting.pop(ino, []):
                    tree.hardlink(other, name)


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
        with path.open("rb") as f:
            for name, size in _ar_members(f, path.name):
                if not name.startswith("data.tar"):
                    continue
                if name.endswith(".zst"):
                    raise SysrootError(f"{path.name}: data.tar.zst is not supported; use dpkg-deb")
                payload = io.BytesIO(f.read(size))
                with tarfile.open(fileobj=payload, mode="r:*") as tar:
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

