"""Test-profile make, cmake and llvm tarballs, named and laid out like the upstream ones.

GNU make 4.4.1 is repacked from Debian's make-dfsg source, CMake 3.29.3 from its PyPI
wheel into Kitware's binary layout, and llvm, cfe and lld 5.0.2 are small CMake trees kept
as real files in ``files/llvm``, ``files/cfe`` and ``files/lld``. Downloads come from the
pipeline's store; all tarballs are written by :class:`Tar`, so they are reproducible byte
for byte.
"""

from __future__ import annotations

import tarfile
import zipfile
from pathlib import Path

from tasks.errors import ProfileError
from tasks.profile.sources import (
    CMAKE_VERSION,
    CMAKE_WHEEL,
    MAKE_DEBIAN,
    MAKE_ORIG,
    MAKE_VERSION,
    Tar,
    fetch,
    text,
    tree,
)
from tasks.store import Store

LLVM_VERSION = "5.0.2"
LLVM_TREES = ("llvm", "cfe", "lld")  # folders of files/, one per source tarball


def make_make_tarball(dest: Path, store: Store) -> Path:
    """Write ``make-4.4.1.tar.gz``: GNU make 4.4.1 from Debian's make-dfsg orig tarball.

    Debian ships upstream's generated ``configure`` but strips the GFDL manual (``doc/``)
    that ``Makefile.in`` still recurses into; a no-op ``doc/Makefile.in`` and Debian's own
    ``make.1`` fill that gap, so ``./configure && make && make install`` works unchanged.
    Upstream mtimes are kept so autotools never thinks its outputs are stale.
    """
    orig, debian = fetch(MAKE_ORIG, store), fetch(MAKE_DEBIAN, store)
    top = f"make-{MAKE_VERSION}"
    tar, newest = Tar(), 0
    with tarfile.open(orig, "r:xz") as src:
        for member in src:
            if member.name != top and not member.name.startswith(top + "/"):
                raise ProfileError(f"{MAKE_ORIG.filename}: unexpected member {member.name}")
            newest = max(newest, int(member.mtime))
            if member.isdir():
                tar.dir(member.name, member.mode, int(member.mtime))
            elif member.issym():
                tar.symlink(member.name, member.linkname, int(member.mtime))
            elif member.isfile():
                data = src.extractfile(member)
                assert data is not None
                tar.file(member.name, data.read(), member.mode, int(member.mtime))
    with tarfile.open(debian, "r:xz") as src:
        manpage = src.extractfile("debian/make.1")
        assert manpage is not None
        tar.file(f"{top}/doc/make.1", manpage.read(), 0o644, newest)
    tar.file(f"{top}/doc/Makefile.in", text("make/doc/Makefile.in").encode(), 0o644, newest)
    return tar.write(dest / f"{top}.tar.gz", compression="gz", level=9)


def make_cmake_tarball(dest: Path, store: Store, *, level: int = 6) -> Path:
    """Write ``cmake-3.29.3-linux-x86_64.tar.gz`` laid out like Kitware's binary tarball."""
    top = f"cmake-{CMAKE_VERSION}-linux-x86_64"
    tar = Tar()
    tar.dir(top)
    with zipfile.ZipFile(fetch(CMAKE_WHEEL, store)) as wheel:
        for info in wheel.infolist():
            rel = info.filename.removeprefix("cmake/data/")
            if rel == info.filename or not rel.strip("/"):
                continue
            mode = (info.external_attr >> 16) & 0o7777
            if info.is_dir():
                tar.dir(f"{top}/{rel}", mode or 0o755)
            else:
                tar.file(f"{top}/{rel}", wheel.read(info), mode or 0o644)
    return tar.write(dest / f"{top}.tar.gz", compression="gz", level=level)


def make_llvm_tarballs(dest: Path) -> tuple[Path, Path, Path]:
    """Write llvm, cfe and lld 5.0.2 ``.src.tar.xz`` stand-ins: small CMake trees.

    Built in place of the real trees (cfe as llvm/tools/clang, lld as llvm/tools/lld), they
    compile a C++ and a C program and install ``clang``, ``clang++``, ``lld`` and
    ``ld.lld`` as links to the base image's clang-11 and lld-11.
    """
    out = []
    for name in LLVM_TREES:
        top = f"{name}-{LLVM_VERSION}.src"
        tar = Tar()
        tar.dir(top)
        for rel, content in tree(name).items():
            tar.file(f"{top}/{rel}", content)
        out.append(tar.write(dest / f"{top}.tar.xz", compression="xz", level=6))
    return out[0], out[1], out[2]
