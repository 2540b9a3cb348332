"""Test profile: local, offline stand-ins for the upstream inputs of the image stages.

The real pipeline builds on Fedora 20 from llvm.org, gnu.org, Kitware and
static.rust-lang.org tarballs. None of those hosts is reachable here, so this module makes
inputs with the same names and layouts from what is: a Debian bullseye (glibc 2.31) base
image made with debootstrap, GNU make 4.4.1 from Debian's make-dfsg source, CMake 3.29.3
from its PyPI wheel, small CMake trees named like LLVM 5.0.2, and a Rust installer packed
from the local rustup toolchain. The same stage Dockerfiles then run on them for real.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import lzma
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import docker.errors
from filelock import FileLock

from tasks.docker_client import Docker, connect
from tasks.errors import CompatError, DockerError, DownloadError, HashMismatch

TARGET_NAME = "bullseye-test"
TARGET_GLIBC = "2.31"
BASE_TAG = "compatbuild-test/bullseye:base"
DEBIAN_MIRROR = os.environ.get("COMPATBUILD_DEBIAN_MIRROR", "http://deb.debian.org/debian")
BASE_PACKAGES = ("gcc", "g++", "libc6-dev", "make", "tar", "gzip", "xz-utils", "ca-certificates")
LLVM_PACKAGES = ("clang-11", "lld-11")
IMAGE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
MAKE_VERSION = "4.4.1"
CMAKE_VERSION = "3.29.3"
LLVM_VERSION = "5.0.2"
RUST_TARGET = "x86_64-unknown-linux-gnu"
RUST_COMPONENTS = ("rustc", "cargo", f"rust-std-{RUST_TARGET}")
DEFAULT_TOOLCHAIN = Path.home() / ".rustup" / "toolchains" / f"stable-{RUST_TARGET}"


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


def default_cache_dir() -> Path:
    """Where downloads, the debootstrap tarball and the packed Rust installer are kept."""
    if env := os.environ.get("COMPATBUILD_TESTPROFILE_CACHE"):
        return Path(env)
    if env := os.environ.get("COMPATBUILD_CACHE"):
        return Path(env) / "testprofile"
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "compatbuild" / "testprofile"


# ------------------------------------------------------------------ files and tarballs


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


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


# ------------------------------------------------------------------ base image


def image_id(dk: Docker, tag: str) -> str | None:
    """The id (sha256:...) of the local image ``tag``, or None."""
    image = dk.image(tag)
    return None if image is None else str(image.id)


def base_packages(with_llvm: bool = True) -> tuple[str, ...]:
    return BASE_PACKAGES + (LLVM_PACKAGES if with_llvm else ())


def build_base_image(
    *,
    tag: str = BASE_TAG,
    workdir: Path,
    suite: str = "bullseye",
    mirror: str = DEBIAN_MIRROR,
    with_llvm: bool = True,
) -> str:
    """Import a debootstrapped Debian ``suite`` as image ``tag``; return its id (sha256:...).

    Does nothing when ``tag`` exists. The root filesystem tarball is cached in ``workdir``,
    so a rebuild after ``docker rmi`` only re-imports it. ``with_llvm`` adds clang-11 and
    lld-11, which the test profile's llvm stage installs as clang, clang++ and ld.lld.
    """
    dk = connect()
    if found := image_id(dk, tag):
        return found
    packages = base_packages(with_llvm)
    key = hashlib.sha256("\n".join([suite, mirror, "minbase", *packages]).encode()).hexdigest()[:16]
    workdir.mkdir(parents=True, exist_ok=True)
    with FileLock(str(workdir / f"{suite}-{key}.lock")):
        if found := image_id(dk, tag):
            return found
        rootfs_tar = _rootfs_tarball(workdir / f"debian-{suite}-{key}.rootfs.tar", suite, mirror, packages)
        repository, _, name = tag.rpartition(":")
        if not repository or "/" in name:
            repository, name = tag, "latest"
        print(f"Importing {rootfs_tar.name} as {tag}")
        changes = [
            f"ENV PATH={IMAGE_PATH}",
            "ENV LANG=C.UTF-8",
            'CMD ["/bin/bash"]',
            f"LABEL org.compatbuild.testprofile.rootfs={key}",
        ]
        try:
            dk.client.api.import_image(src=str(rootfs_tar), repository=repository, tag=name, changes=changes)
        except docker.errors.DockerException as exc:
            raise DockerError(f"docker import of {rootfs_tar} as {tag} failed: {exc}") from exc
        found = image_id(dk, tag)
        if found is None:
            raise DockerError(f"docker import reported success but {tag} does not exist")
        return found


def _rootfs_tarball(dest: Path, suite: str, mirror: str, packages: tuple[str, ...]) -> Path:
    if dest.exists():
        print(f"Using cached {dest}")
        return dest
    debootstrap = shutil.which("debootstrap") or shutil.which("debootstrap", path="/usr/sbin:/sbin")
    if debootstrap is None:
        raise ProfileError("debootstrap not found; install it (apt-get install debootstrap)")
    rootfs = Path(tempfile.mkdtemp(prefix="rootfs-", dir=dest.parent))
    part = dest.with_name(dest.name + ".part")
    log = dest.with_suffix(".debootstrap.log")
    try:
        print(f"Bootstrapping Debian {suite} with {', '.join(packages)}")
        with log.open("wb") as out:
            done = subprocess.run(
                [
                    debootstrap,
                    "--variant=minbase",
                    f"--include={','.join(packages)}",
                    suite,
                    str(rootfs),
                    mirror,
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                check=False,
            )
        if done.returncode != 0:
            raise ProfileError(f"debootstrap {suite} failed (exit {done.returncode}); see {log}")
        _slim(rootfs)
        subprocess.run(["tar", "--numeric-owner", "-C", str(rootfs), "-cf", str(part), "."], check=True)
        os.replace(part, dest)
    except subprocess.CalledProcessError as exc:
        raise ProfileError(f"packing the {suite} root filesystem failed: {exc}") from exc
    finally:
        part.unlink(missing_ok=True)
        _unmount_below(rootfs)
        shutil.rmtree(rootfs, ignore_errors=True)
    return dest


def _slim(rootfs: Path) -> None:
    """Drop what a build image never reads: .debs, apt lists, docs, man pages, translations."""
    for sub in (
        "var/cache/apt/archives",
        "var/lib/apt/lists",
        "usr/share/doc",
        "usr/share/man",
        "usr/share/info",
        "usr/share/locale",
    ):
        for child in (rootfs / sub).glob("*"):
            if child.is_dir() and not child.is_symlink():
                if child.name != "partial":
                    shutil.rmtree(child)
            elif child.name != "lock":
                child.unlink()


def _unmount_below(path: Path) -> None:
    """Unmount anything a failed debootstrap left mounted under ``path`` (before rmtree)."""
    prefix = str(path) + "/"
    mounts = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    for mount in sorted((m for m in mounts if m.startswith(prefix)), reverse=True):
        subprocess.run(["umount", "-l", mount], check=False)


# ------------------------------------------------------------------ make, cmake, llvm


def make_make_tarball(dest: Path, cache: Path) -> Path:
    """Write ``make-4.4.1.tar.gz``: GNU make 4.4.1 from Debian's make-dfsg orig tarball.

    Debian ships upstream's generated ``configure`` but strips the GFDL manual (``doc/``)
    that ``Makefile.in`` still recurses into; a no-op ``doc/Makefile.in`` and Debian's own
    ``make.1`` fill that gap, so ``./configure && make && make install`` works unchanged.
    Upstream mtimes are kept so autotools never thinks its outputs are stale.
    """
    orig, debian = fetch(MAKE_ORIG, cache), fetch(MAKE_DEBIAN, cache)
    top = f"make-{MAKE_VERSION}"
    tar, newest = Tar(), 0
    with tarfile.open(orig, "r:xz") as src:
        for member in src:
            if member.name != top and not member.name.startswith(top + "/"):
                raise ProfileError(f"{orig.name}: unexpected member {member.name}")
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
    tar.file(f"{top}/doc/Makefile.in", MAKE_DOC_MAKEFILE_IN.encode(), 0o644, newest)
    return tar.write(dest / f"{top}.tar.gz", compression="gz", level=9)


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


def make_cmake_tarball(dest: Path, cache: Path, *, level: int = 6) -> Path:
    """Write ``cmake-3.29.3-linux-x86_64.tar.gz`` laid out like Kitware's binary tarball."""
    top = f"cmake-{CMAKE_VERSION}-linux-x86_64"
    tar = Tar()
    tar.dir(top)
    with zipfile.ZipFile(cmake_wheel(cache)) as wheel:
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
    trees = {"llvm": LLVM_TREE, "cfe": CFE_TREE, "lld": LLD_TREE}
    out = []
    for name, files in trees.items():
        top = f"{name}-{LLVM_VERSION}.src"
        tar = Tar()
        tar.dir(top)
        for rel, content in files.items():
            tar.file(f"{top}/{rel}", content.encode())
        out.append(tar.write(dest / f"{top}.tar.xz", compression="xz", level=6))
    return out[0], out[1], out[2]


# ------------------------------------------------------------------ rust


def rustc_version(toolchain: Path) -> str:
    """``rustc --version`` of ``toolchain`` without the leading "rustc ", e.g. "1.95.0 (… 2026-04-14)"."""
    try:
        out = subprocess.run(
            [str(toolchain / "bin" / "rustc"), "--version"], capture_output=True, text=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        raise ProfileError(f"cannot run rustc of toolchain {toolchain}: {exc}") from exc
    return out.strip().removeprefix("rustc ")


def rust_manifest(toolchain: Path) -> dict[str, list[tuple[str, str]]]:
    """The ``(kind, path)`` manifest entries of each packed component, relative to ``toolchain``.

    Only what ``cargo build`` needs: no docs, man pages, gdb scripts, clippy or rustfmt.
    """
    lib = toolchain / "lib"
    libs = sorted(p.name for p in lib.glob("*.so*") if p.is_file()) if lib.is_dir() else []
    rustc = [
        ("file", "bin/rustc"),
        ("file", "bin/rustdoc"),
        *(("file", f"lib/{n}") for n in libs),
        ("dir", f"lib/rustlib/{RUST_TARGET}/bin"),
    ]
    record = lib / "rustlib" / f"manifest-rust-std-{RUST_TARGET}"
    if record.is_file():  # rustup's own list: leaves out rustc-dev's rlibs if that is installed
        std = [("file", line[5:]) for line in record.read_text().splitlines() if line.startswith("file:")]
    else:
        std = [("dir", f"lib/rustlib/{RUST_TARGET}/lib")]
    entries = {"rustc": rustc, "cargo": [("file", "bin/cargo")], f"rust-std-{RUST_TARGET}": std}
    for kind, rel in (e for comp in entries.values() for e in comp):
        if not (toolchain / rel).is_file() and not (kind == "dir" and (toolchain / rel).is_dir()):
            raise ProfileError(f"toolchain {toolchain} lacks {rel}")
    return entries


def _installer_skeleton(top: str, components: Iterable[str], version_line: str) -> Tar:
    tar = Tar()
    tar.file(f"{top}/install.sh", INSTALL_SH.encode(), 0o755)
    tar.file(f"{top}/components", "".join(f"{c}\n" for c in components).encode())
    tar.file(f"{top}/rust-installer-version", b"3\n")
    tar.file(f"{top}/version", f"{version_line}\n".encode())
    return tar


def _add_tree(tar: Tar, name: str, path: Path) -> None:
    if path.is_symlink():
        tar.symlink(name, os.readlink(path))
    elif path.is_dir():
        tar.dir(name)
        for child in sorted(path.iterdir()):
            _add_tree(tar, f"{name}/{child.name}", child)
    else:
        tar.file(name, path, 0o755 if path.stat().st_mode & 0o111 else 0o644)


def make_rust_installer(
    dest: Path,
    *,
    toolchain: Path = DEFAULT_TOOLCHAIN,
    version: str | None = None,
    level: int = 1,
    cache: Path | None = None,
) -> Path:
    """Write ``rust-<version>-x86_64-unknown-linux-gnu.tar.gz`` from a local rustup toolchain.

    The layout is that of Rust's combined offline installer (install.sh, components,
    rust-installer-version, one directory with a manifest.in per component) holding rustc,
    cargo and rust-std only. ``version`` names the tarball and defaults to the toolchain's
    own; the ``version`` file inside always tells the truth. With ``cache``, an identical
    earlier pack (same toolchain files, version, level, install.sh) is copied instead.
    """
    real = rustc_version(toolchain)
    version = version or real.split()[0]
    name = f"rust-{version}-{RUST_TARGET}"
    entries = rust_manifest(toolchain)
    cached = None
    if cache is not None:
        key = hashlib.sha256(
            json.dumps(
                [
                    INSTALL_SH,
                    real,
                    version,
                    level,
                    str(toolchain),
                    [
                        (rel, (toolchain / rel).stat().st_size, (toolchain / rel).stat().st_mtime_ns)
                        for comp in entries.values()
                        for _, rel in comp
                    ],
                ]
            ).encode()
        ).hexdigest()[:16]
        cached = cache / key / f"{name}.tar.gz"
        if cached.exists():
            print(f"Using cached {cached}")
            return _copy_into(cached, dest)
    print(f"Packing {name}.tar.gz from {toolchain}")
    tar = _installer_skeleton(name, entries, real)
    for comp, comp_entries in entries.items():
        tar.file(f"{name}/{comp}/manifest.in", "".join(f"{k}:{rel}\n" for k, rel in comp_entries).encode())
        for _, rel in comp_entries:
            _add_tree(tar, f"{name}/{comp}/{rel}", toolchain / rel)
    if cached is None:
        return tar.write(dest / f"{name}.tar.gz", compression="gz", level=level)
    with FileLock(str(cached.parent) + ".lock"):
        if not cached.exists():
            tar.write(cached, compression="gz", level=level)
    return _copy_into(cached, dest)


def _copy_into(src: Path, dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    out, part = dest / src.name, dest / (src.name + ".part")
    try:
        try:
            os.link(src, part)
        except OSError:
            shutil.copyfile(src, part)
        os.replace(part, out)
    finally:
        part.unlink(missing_ok=True)
    return out


def make_small_rust_installer(dest: Path, version: str) -> Path:
    """Write a tiny installer of the same layout whose ``rustc``/``cargo`` only print a version.

    Cheap to make and install: tests use it to show a new Rust input rebuilds only the
    stages from rust on.
    """
    name = f"rust-{version}-{RUST_TARGET}"
    std = f"rust-std-{RUST_TARGET}"
    tar = _installer_skeleton(name, RUST_COMPONENTS, f"{version} (compatbuild test profile stub)")
    for comp, kind, rel, body in (
        ("rustc", "file", "bin/rustc", STUB_SCRIPT.format(tool="rustc", version=version)),
        ("cargo", "file", "bin/cargo", STUB_SCRIPT.format(tool="cargo", version=version)),
        (std, "dir", f"lib/rustlib/{RUST_TARGET}/lib", "compatbuild test profile: no standard library\n"),
    ):
        tar.file(f"{name}/{comp}/manifest.in", f"{kind}:{rel}\n".encode())
        if kind == "file":
            tar.file(f"{name}/{comp}/{rel}", body.encode(), 0o755)
        else:
            tar.file(f"{name}/{comp}/{rel}/README.compatbuild", body.encode())
    return tar.write(dest / f"{name}.tar.gz", compression="gz", level=9)


# ------------------------------------------------------------------ lockfile and profile


def _toml_str(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid TOML basic string


def write_lockfile(
    path: Path,
    *,
    base_image: str,
    base_id: str | None,
    artifacts: Iterable[tuple[str, Path]],
    target: str = TARGET_NAME,
    glibc: str = TARGET_GLIBC,
) -> Path:
    """Write the profile's lockfile (schema 1): target, base image, and file:// artifacts.

    A local image has no registry digest, so the base is pinned by its image ``id``.
    """
    lines = [
        "# compatbuild test profile: offline stand-ins made by tasks/testprofile.py, not upstream.",
        "schema = 1",
        "",
        "[target]",
        f"name = {_toml_str(target)}",
        f"glibc = {_toml_str(glibc)}",
        "",
        "[base]",
        f"image = {_toml_str(base_image)}",
    ]
    if base_id:
        lines.append(f"id = {_toml_str(base_id)}")
    for name, file in artifacts:
        lines += [
            "",
            "[[artifact]]",
            f"name = {_toml_str(name)}",
            f"url = {_toml_str(file.resolve().as_uri())}",
            f"sha256 = {_toml_str(sha256_file(file))}",
        ]
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + ".part")
    part.write_text("\n".join(lines) + "\n")
    os.replace(part, path)
    return path


def prepare_profile(
    root: Path,
    *,
    with_base_image: bool = True,
    cache: Path | None = None,
    toolchain: Path = DEFAULT_TOOLCHAIN,
    base_tag: str = BASE_TAG,
) -> Path:
    """Make every test-profile input under ``root/inputs`` and return ``root/rsrc.lock.toml``.

    Downloads, the debootstrap tarball and the packed Rust installer are kept in ``cache``
    (default :func:`default_cache_dir`). Without the base image the lockfile has no base
    ``id``, so it does not load until one is added.
    """
    cache = cache or default_cache_dir()
    inputs = root / "inputs"
    llvm, cfe, lld = make_llvm_tarballs(inputs)
    artifacts = [
        ("make", make_make_tarball(inputs, cache / "downloads")),
        ("cmake", make_cmake_tarball(inputs, cache / "downloads")),
        ("llvm", llvm),
        ("clang", cfe),
        ("lld", lld),
        ("rust", make_rust_installer(inputs, toolchain=toolchain, cache=cache / "rust")),
    ]
    base_id = build_base_image(tag=base_tag, workdir=cache / "base") if with_base_image else None
    return write_lockfile(root / "rsrc.lock.toml", base_image=base_tag, base_id=base_id, artifacts=artifacts)


# ------------------------------------------------------------------ texts of the fixtures

MAKE_DOC_MAKEFILE_IN = """\
# compatbuild test profile: Debian's make-dfsg removes the GFDL manual (doc/), which
# Makefile.in still recurses into. Every target here does nothing.
all:
\t@:
.DEFAULT:
\t@:
"""

INSTALL_SH = r"""#!/bin/sh
# Offline installer of the compatbuild test profile (written for it; not rust-installer's).
# Reads the layout of Rust's combined installer: the file 'components' names one directory
# per component, whose manifest.in lists 'file:PATH' and 'dir:PATH' entries to copy under
# the prefix.
set -eu

usage() {
    echo "usage: install.sh [--prefix=DIR] [--components=a,b] [--without=a,b] [--disable-ldconfig]"
}
die() {
    echo "install.sh: error: $*" >&2
    exit 1
}
in_list() {
    case ",$2," in *",$1,"*) return 0 ;; esac
    return 1
}

prefix=/usr/local
components=
without=
ldconfig=yes
for arg in "$@"; do
    case "$arg" in
        --prefix=*) prefix=${arg#--prefix=} ;;
        --components=*) components=${arg#--components=} ;;
        --without=*) without=${arg#--without=} ;;
        --disable-ldconfig) ldconfig=no ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; die "unknown option: $arg" ;;
    esac
done
[ -n "$prefix" ] || die "--prefix is empty"

src=$(cd "$(dirname "$0")" && pwd)
available=$(tr '\n' ',' < "$src/components")
for name in $(echo "$components,$without" | tr ',' ' '); do
    in_list "$name" "$available" || die "unknown component: $name (this installer has: ${available%,})"
done

mkdir -p "$prefix/lib/rustlib"
installed=0
for comp in $(echo "$available" | tr ',' ' '); do
    if [ -n "$components" ] && ! in_list "$comp" "$components"; then continue; fi
    if in_list "$comp" "$without"; then continue; fi
    echo "install: installing component '$comp'"
    record="$prefix/lib/rustlib/manifest-$comp"
    : > "$record"
    while IFS= read -r entry || [ -n "$entry" ]; do
        path=${entry#*:}
        case "$entry" in
            file:*)
                mkdir -p "$(dirname "$prefix/$path")"
                cp -P "$src/$comp/$path" "$prefix/$path"
                echo "install: $prefix/$path" ;;
            dir:*)
                mkdir -p "$prefix/$path"
                cp -R "$src/$comp/$path/." "$prefix/$path/"
                echo "install: $prefix/$path/" ;;
            *) die "bad entry in $comp/manifest.in: $entry" ;;
        esac
        echo "$entry" >> "$record"
    done < "$src/$comp/manifest.in"
    if ! grep -qx "$comp" "$prefix/lib/rustlib/components" 2>/dev/null; then
        echo "$comp" >> "$prefix/lib/rustlib/components"
    fi
    installed=$((installed + 1))
done
[ "$installed" -gt 0 ] || die "no component selected"
cp "$src/rust-installer-version" "$prefix/lib/rustlib/rust-installer-version"
if [ "$ldconfig" = yes ] && command -v ldconfig > /dev/null 2>&1; then
    ldconfig || echo "install.sh: warning: ldconfig failed" >&2
fi
echo "install: installed $installed component(s) under $prefix"
"""

STUB_SCRIPT = """#!/bin/sh
# compatbuild test profile: a stub {tool}, not a compiler.
echo "{tool} {version} (compatbuild test profile stub)"
"""

LLVM_TREE = {
    "CMakeLists.txt": r"""# compatbuild test profile: a stand-in for the LLVM 5.0.2 source tree, not LLVM.
# Configured, built and installed like the real tree; it compiles and runs a C++ program,
# and builds tools/clang and tools/lld when the cfe and lld stand-ins were moved there.
# CMake ignores -D options it does not use (with a warning).
cmake_minimum_required(VERSION 3.14)
project(LLVM VERSION 5.0.2 LANGUAGES C CXX)

set(LLVM_TARGETS_TO_BUILD "X86" CACHE STRING "Targets to build (recorded only)")
string(REPLACE ";" "," profile_targets "${LLVM_TARGETS_TO_BUILD}")
message(STATUS "compatbuild test profile: LLVM ${PROJECT_VERSION} stand-in, targets ${profile_targets}")

add_executable(llvm-profile-version tools/llvm-profile-version/llvm-profile-version.cpp)
target_compile_definitions(llvm-profile-version PRIVATE
  "PROFILE_VERSION=\"${PROJECT_VERSION}\"" "PROFILE_TARGETS=\"${profile_targets}\"")
add_custom_command(TARGET llvm-profile-version POST_BUILD COMMAND llvm-profile-version)
install(TARGETS llvm-profile-version RUNTIME DESTINATION bin)

foreach(sub clang lld)
  if(EXISTS "${CMAKE_CURRENT_SOURCE_DIR}/tools/${sub}/CMakeLists.txt")
    add_subdirectory(tools/${sub})
  endif()
endforeach()
""",
    "tools/llvm-profile-version/llvm-profile-version.cpp": r"""// compatbuild test profile: the llvm stage's
// C++ compiler and linker work.
#include <iostream>
#include <string>

int main() {
  std::string line = std::string("LLVM ") + PROFILE_VERSION;
  line += " (compatbuild test profile stand-in), targets: ";
  line += PROFILE_TARGETS;
  std::cout << line << std::endl;
  return 0;
}
""",
}

CFE_TREE = {
    "CMakeLists.txt": r"""# compatbuild test profile: a stand-in for cfe (clang) 5.0.2, not clang.
# bin/clang and bin/clang++ are links to the base image's clang-11, a real driver.
find_program(CLANG_PROFILE_CLANG NAMES clang-11)
find_program(CLANG_PROFILE_CLANGXX NAMES clang++-11)
if(NOT CLANG_PROFILE_CLANG OR NOT CLANG_PROFILE_CLANGXX)
  message(FATAL_ERROR "compatbuild test profile: clang-11 not found; the base image needs clang-11")
endif()
add_executable(clang-profile-check clang-profile-check.c)
add_custom_command(TARGET clang-profile-check POST_BUILD COMMAND clang-profile-check)
file(CREATE_LINK "${CLANG_PROFILE_CLANG}" "${CMAKE_CURRENT_BINARY_DIR}/clang" SYMBOLIC)
file(CREATE_LINK "${CLANG_PROFILE_CLANGXX}" "${CMAKE_CURRENT_BINARY_DIR}/clang++" SYMBOLIC)
install(PROGRAMS "${CMAKE_CURRENT_BINARY_DIR}/clang" "${CMAKE_CURRENT_BINARY_DIR}/clang++" DESTINATION bin)
""",
    "clang-profile-check.c": r"""/* compatbuild test profile: proves the llvm stage's C compiler works. */
#include <stdio.h>

int main(void) {
    printf("clang 5.0.2 stand-in: C compiler works\n");
    return 0;
}
""",
}

LLD_TREE = {
    "CMakeLists.txt": r"""# compatbuild test profile: a stand-in for lld 5.0.2, not lld.
# bin/lld and bin/ld.lld are links to the base image's lld-11, a real linker.
find_program(LLD_PROFILE_LLD NAMES lld-11)
find_program(LLD_PROFILE_LD_LLD NAMES ld.lld-11)
if(NOT LLD_PROFILE_LLD OR NOT LLD_PROFILE_LD_LLD)
  message(FATAL_ERROR "compatbuild test profile: lld-11 not found; the base image needs lld-11")
endif()
add_executable(lld-profile-check lld-profile-check.cpp)
add_custom_command(TARGET lld-profile-check POST_BUILD COMMAND lld-profile-check)
file(CREATE_LINK "${LLD_PROFILE_LLD}" "${CMAKE_CURRENT_BINARY_DIR}/lld" SYMBOLIC)
file(CREATE_LINK "${LLD_PROFILE_LD_LLD}" "${CMAKE_CURRENT_BINARY_DIR}/ld.lld" SYMBOLIC)
install(PROGRAMS "${CMAKE_CURRENT_BINARY_DIR}/lld" "${CMAKE_CURRENT_BINARY_DIR}/ld.lld" DESTINATION bin)
""",
    "lld-profile-check.cpp": r"""// compatbuild test profile: proves the llvm stage's C++ compiler works.
#include <iostream>

int main() {
  std::cout << "lld 5.0.2 stand-in: C++ compiler works" << std::endl;
  return 0;
}
""",
}
