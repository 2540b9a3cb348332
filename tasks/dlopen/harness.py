"""The smoke harness (``docker/smoke/harness.c``) built on the host: for this machine's glibc,
or against a sysroot's glibc alone (its own crt files, libc and loader, never the host's).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from tasks.atomic import ensure_file
from tasks.builder.stages import DOCKER_DIR
from tasks.dlopen.sysroot import STAMP as SYSROOT_STAMP
from tasks.errors import SmokeError, SysrootError

HARNESS_C = DOCKER_DIR / "smoke" / "harness.c"
LOADER = "ld-linux-x86-64.so.2"
# Library directories of both layouts: Fedora (lib64) and Debian multiarch.
LIB_DIRS = ("lib64", "usr/lib64", "lib/x86_64-linux-gnu", "usr/lib/x86_64-linux-gnu",
            "lib", "usr/lib")


def sysroot_link(sysroot: Path) -> tuple[list[str], list[str]]:
    """The flags that compile and link the harness against ``sysroot`` alone: (before, after) the source.

    ``gcc --sysroot`` by itself still takes the host's ``crti.o`` and libc, so the link is
    spelled out: ``-nostdlib -no-pie``, then the sysroot's own ``crt1.o crti.o``, the source,
    its ``libdl.so.2 libc.so.6 libc_nonshared.a`` and loader (which libc needs), ``crtn.o``.
    Headers come from ``<sysroot>/usr/include`` (and gcc's own ``stddef.h``).
    """
    dirs = [sysroot / d for d in LIB_DIRS if (sysroot / d).is_dir()]

    def find(name: str) -> str:
        for d in dirs:
            if (d / name).exists():
                return str(d / name)
        raise SysrootError(f"{sysroot}: no {name} in {', '.join(LIB_DIRS)}; the sysroot needs the "
                           "glibc development files (libc6-dev, glibc-devel)")

    before = [f"--sysroot={sysroot}", "-nostdlib", "-no-pie", find("crt1.o"), find("crti.o")]
    after = [find("libdl.so.2"), find("libc.so.6"), find("libc_nonshared.a"), find(LOADER), find("crtn.o")]
    return before, after


def compile_harness(cache: Path, *, sysroot: Path | None = None, cc: str | None = None,
                    trace: list[str] | None = None) -> Path:
    """The harness built by the host compiler (against ``sysroot`` alone if given), cached by
    the hash of its source, compiler, flags and sysroot.

    With ``trace`` (a list), the link runs even when cached, with ``-Wl,-t``, into a
    scratch file, and the files the linker opened are appended to ``trace``: the proof of
    what the harness was linked against.
    """
    compiler = cc or os.environ.get("CC") or ("gcc" if sysroot else "cc")
    exe = shutil.which(compiler)
    if exe is None:
        raise SmokeError(f"no C compiler '{compiler}' on PATH to build the smoke harness")
    before, after = sysroot_link(sysroot) if sysroot is not None else ([], ["-ldl"])
    flags = ["-O2", "-Wall", *before]
    source = HARNESS_C.read_bytes()
    stamp = (sysroot / SYSROOT_STAMP) if sysroot else None
    key = hashlib.sha256(
        b"\0".join([source, exe.encode(), " ".join(flags + after).encode(),
                    stamp.read_bytes() if stamp and stamp.is_file() else b""])
    ).hexdigest()[:20]
    out = cache / "smoke" / f"harness-{key}"

    def compile_to(tmp: Path, extra: Sequence[str] = ()) -> str:
        proc = subprocess.run(  # noqa: S603 - argument list, no shell
            [exe, *flags, *extra, "-o", str(tmp), str(HARNESS_C), *after],
            capture_output=True, text=True, timeout=300, check=False,
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
