"""The smoke harness (``docker/smoke/harness.c``) built on the host: for this machine's glibc,
or against a sysroot's glibc alone (its own crt files, libc and loader, never the host's).

A sysroot's arch is read from the loader it holds (:func:`sysroot_arch`: ``ld-linux-x86-64.so.2``
or ``ld-linux-aarch64.so.1``, :mod:`tasks.arches`). One of this machine's arch is linked by the
host's gcc; one of another arch (an arm64 Debian sysroot on this x86_64 machine) by the pinned
zig as a cross compiler and linker (:class:`CrossCC`: ``zig cc -target aarch64-linux-gnu``), with
the same ``-nostdlib`` link against the sysroot's own files and only its headers
(``-nostdinc``, zig's compiler headers for ``stddef.h``); it then runs under qemu-user
(:func:`tasks.dlopen.smoke.smoke_sysroot`). The host stub of a host mode is built the same way.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tasks import arches
from tasks.arches import Arch
from tasks.atomic import ensure_file
from tasks.builder.stages import DOCKER_DIR
from tasks.dlopen.hostmode import STUB_FLAGS
from tasks.dlopen.sysroot import STAMP as SYSROOT_STAMP
from tasks.elf.hostsyms import LIB_DIRS as LIB_DIRS  # both layouts: Fedora lib64, Debian multiarch
from tasks.errors import SmokeError, SysrootError

HARNESS_C = DOCKER_DIR / "smoke" / "harness.c"
LOADER = arches.X86_64.loader  # this machine's; a sysroot's own is sysroot_arch(root).loader


@dataclass(frozen=True)
class CrossCC:
    """The pinned zig as a C compiler for another arch, and the folder it caches in."""

    zig: Path
    cache: Path

    def argv(self, arch: Arch) -> list[str]:
        return [str(self.zig), "cc", "-target", arch.zig_target]

    def env(self) -> dict[str, str]:
        return {**os.environ, "ZIG_GLOBAL_CACHE_DIR": str(self.cache / "global"),
                "ZIG_LOCAL_CACHE_DIR": str(self.cache / "local")}


def sysroot_arch(sysroot: Path) -> Arch:
    """The arch of ``sysroot``: the one whose loader it holds; SysrootError when it holds none."""
    for arch in arches.ARCHES.values():
        if any((sysroot / d / arch.loader).exists() for d in arch.lib_dirs):
            return arch
    loaders = " or ".join(a.loader for a in arches.ARCHES.values())
    raise SysrootError(f"{sysroot}: no {loaders} in {', '.join(arches.X86_64.lib_dirs)} (or the "
                       "aarch64 multiarch folders); not a glibc sysroot")


def _compiler(sysroot: Path | None, cc: str | None, cross: CrossCC | None, what: str) -> tuple[list[str], Arch]:
    """The compiler's argv for a place (this machine, or ``sysroot``) and the place's arch."""
    host = arches.host() or arches.X86_64
    arch = sysroot_arch(sysroot) if sysroot is not None else host
    if arch != host:
        if cross is None:
            raise SmokeError(f"{sysroot} is an {arch.name} sysroot: {what} is cross-compiled for it by the "
                             "pinned zig, which `invoke smoke --matrix` installs")
        return cross.argv(arch), arch
    compiler = cc or os.environ.get("CC") or ("gcc" if sysroot else "cc")
    exe = shutil.which(compiler)
    if exe is None:
        raise SmokeError(f"no C compiler '{compiler}' on PATH to build {what}")
    return [exe], arch


def _cross_headers(sysroot: Path, arch: Arch, cross: CrossCC) -> list[str]:
    """zig cc's include flags for ``sysroot``: its compiler headers, then the sysroot's own only."""
    return ["-nostdinc", "-isystem", str(cross.zig.parent / "lib" / "include"),
            "-isystem", str(sysroot / "usr" / "include" / arch.multiarch), "-isystem", str(sysroot / "usr" / "include")]


def sysroot_link(sysroot: Path, arch: Arch | None = None) -> tuple[list[str], list[str]]:
    """The flags that compile and link the harness against ``sysroot`` alone: (before, after) the source.

    ``gcc --sysroot`` by itself still takes the host's ``crti.o`` and libc, so the link is
    spelled out: ``-nostdlib -no-pie``, then the sysroot's own ``crt1.o crti.o``, the source,
    its ``libdl.so.2 libc.so.6 libc_nonshared.a`` and loader (which libc needs), ``crtn.o``.
    Headers come from ``<sysroot>/usr/include`` (and gcc's own ``stddef.h``). ``arch`` (default:
    the sysroot's own) says which loader and multiarch folders to look in.
    """
    arch = arch or sysroot_arch(sysroot)
    lib_dirs = arch.lib_dirs
    dirs = [sysroot / d for d in lib_dirs if (sysroot / d).is_dir()]

    def find(name: str) -> str:
        for d in dirs:
            if (d / name).exists():
                return str(d / name)
        raise SysrootError(f"{sysroot}: no {name} in {', '.join(lib_dirs)}; the sysroot needs the "
                           "glibc development files (libc6-dev, glibc-devel)")

    before = [f"--sysroot={sysroot}", "-nostdlib", "-no-pie", find("crt1.o"), find("crti.o")]
    after = [find("libdl.so.2"), find("libc.so.6"), find("libc_nonshared.a"), find(arch.loader), find("crtn.o")]
    return before, after


def compile_harness(cache: Path, *, sysroot: Path | None = None, cc: str | None = None,
                    trace: list[str] | None = None, cross: CrossCC | None = None) -> Path:
    """The harness built by the host compiler (against ``sysroot`` alone if given), cached by
    the hash of its source, compiler, flags and sysroot. A sysroot of another arch than this
    machine's is compiled by ``cross`` (the pinned zig; SmokeError without it).

    With ``trace`` (a list), the link runs even when cached, with ``-Wl,-t``, into a
    scratch file, and the files the linker opened are appended to ``trace``: the proof of
    what the harness was linked against (the host compiler's links only).
    """
    argv, arch = _compiler(sysroot, cc, cross, "the smoke harness")
    env = None
    if sysroot is not None and cross is not None and argv[0] == str(cross.zig):
        before, after = sysroot_link(sysroot, arch)
        before = [*_cross_headers(sysroot, arch, cross), *[f for f in before if not f.startswith("--sysroot=")]]
        env = cross.env()
        if trace is not None:
            raise SmokeError("the link trace is the host compiler's (-Wl,-t); zig cc does not pass it on")
    else:
        before, after = sysroot_link(sysroot, arch) if sysroot is not None else ([], ["-ldl"])
    flags = ["-O2", "-Wall", *before]
    source = HARNESS_C.read_bytes()
    stamp = (sysroot / SYSROOT_STAMP) if sysroot else None
    key = hashlib.sha256(
        b"\0".join([source, " ".join(argv).encode(), " ".join(flags + after).encode(),
                    stamp.read_bytes() if stamp and stamp.is_file() else b""])
    ).hexdigest()[:20]
    out = cache / "smoke" / f"harness-{key}"

    def compile_to(tmp: Path, extra: Sequence[str] = ()) -> str:
        proc = subprocess.run(  # noqa: S603 - argument list, no shell
            [*argv, *flags, *extra, "-o", str(tmp), str(HARNESS_C), *after],
            capture_output=True, text=True, timeout=300, check=False, env=env,
        )
        if proc.returncode != 0:
            why = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            place = f" against {sysroot}" if sysroot else ""
            raise SmokeError(f"cannot compile the smoke harness{place}: {why}")
        return proc.stdout

    def write(tmp: Path) -> None:
        compile_to(tmp)

    ensure_file(out, write)
    if trace is not None:
        scratch = out.with_name(f".{out.name}.trace")
        try:
            trace.extend(line.strip() for line in compile_to(scratch, ["-Wl,-t"]).splitlines() if line.strip())
        finally:
            scratch.unlink(missing_ok=True)
    return out


def compile_stub(cache: Path, source: str, *, sysroot: Path | None = None, cc: str | None = None,
                 cross: CrossCC | None = None) -> Path:
    """A host stub (:func:`tasks.dlopen.hostmode.stub_source`) built where the harness is built
    for that place (the host's compiler, against ``sysroot`` when given; for a sysroot of
    another arch, ``cross``: zig cc for that arch), cached by hash.

    It is linked ``-nostdlib``: it needs no library, so it adds no glibc need of its own.
    """
    argv, _arch = _compiler(sysroot, cc, cross, "the host stub")
    foreign = cross is not None and argv[0] == str(cross.zig)
    flags = [*STUB_FLAGS, *([f"--sysroot={sysroot}"] if sysroot is not None and not foreign else [])]
    material = [source.encode(), " ".join(argv).encode(), " ".join(flags).encode()]
    key = hashlib.sha256(b"\0".join(material)).hexdigest()[:20]
    out = cache / "smoke" / "stubs" / f"host-stub-{key}.so"

    def write(tmp: Path) -> None:
        src = tmp.with_name(tmp.name + ".c")
        src.write_text(source)
        try:
            proc = subprocess.run(  # noqa: S603 - argument list, no shell
                [*argv, *flags, "-o", str(tmp), str(src)], capture_output=True, text=True, timeout=300, check=False,
                env=cross.env() if foreign and cross is not None else None,
            )
        finally:
            src.unlink(missing_ok=True)
        if proc.returncode != 0:
            why = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise SmokeError(f"cannot compile the host stub: {why}")

    ensure_file(out, write)
    return out
