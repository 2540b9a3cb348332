"""Prove a library loads: ``dlopen(path, RTLD_NOW)`` it under an old glibc and call a symbol.

Three places to do it, one harness (``docker/smoke/harness.c``) and one verdict:

- ``smoke_in_image``: the harness baked into the smoke image (the target's own gcc and
  glibc), run as nobody with no network, each library mounted read-only at /libs/<name>
  (given the image's tag: :func:`tasks.pipeline.smoke` makes the image);
- ``smoke_native``: the harness built by the host's cc, run on this machine's glibc;
- ``smoke_sysroot``: the harness built by the host's gcc against a sysroot's own crt
  files, libc and loader (``-nostdlib``, :func:`tasks.dlopen.harness.sysroot_link`; ``gcc
  --sysroot`` alone takes the host's crti.o and libc), run by that sysroot's own loader
  (``<sysroot>/lib64/ld-linux-x86-64.so.2 --inhibit-cache --library-path ...``), so
  libc, libdl and libgcc_s all come from the old glibc, no container needed.

A failure raises SmokeError carrying the loader's own dlerror() text, e.g.
``version `GLIBC_2.34' not found``: exactly what a host program would print.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tasks.atomic import write_atomic
from tasks.builder.docker_client import Docker
from tasks.builder.transport import Bind, Mount
from tasks.dlopen.harness import HARNESS_C as HARNESS_C  # re-exported: the harness lives in harness.py
from tasks.dlopen.harness import LIB_DIRS, LOADER, compile_harness
from tasks.dlopen.harness import sysroot_link as sysroot_link
from tasks.errors import SmokeError, SysrootError
from tasks.inputs.lockfile import Lockfile
from tasks.store import sha256_file

HARNESS_IN_IMAGE = "compatbuild-smoke"
NOBODY = "65534:65534"
TIMEOUT = 120
Log = Callable[[str], None]


@dataclass(frozen=True)
class SmokeResult:
    """One library's smoke run: where it ran, the harness's exit status and output."""

    library: Path
    where: str
    status: int
    output: str

    @property
    def ok(self) -> bool:
        return self.status == 0

    @property
    def error(self) -> str | None:
        """The harness's own failure line (with dlerror text), or None when it passed."""
        if self.ok:
            return None
        for line in self.output.splitlines():
            if line.startswith(("smoke: dlopen ", "smoke: dlsym ")):
                return line.removeprefix("smoke: ")
        if self.status < 0:
            try:
                name = signal.Signals(-self.status).name
            except ValueError:
                name = f"signal {-self.status}"
            return f"the harness died of {name} (crash inside the library?)"
        if self.status >= 128:  # docker reports a killed process as 128 + signal
            return f"the harness died of signal {self.status - 128} (crash inside the library?)"
        last = self.output.strip().splitlines()[-1:] or ["no output"]
        return f"the harness exited {self.status}: {last[0]}"


def harness_args(symbol: str | None, optional_symbol: str | None) -> list[str]:
    """The harness's flags: call ``symbol`` (it must exist), else ``optional_symbol`` if it exists."""
    if symbol:
        return ["--symbol", symbol]
    if optional_symbol:
        return ["--optional-symbol", optional_symbol]
    return []


def check(results: Sequence[SmokeResult]) -> list[SmokeResult]:
    """Return the results when all passed; else raise SmokeError naming each failure."""
    failed = [r for r in results if not r.ok]
    if failed:
        raise SmokeError(
            "; ".join(f"{r.library.name} failed on {r.where}: {r.error}" for r in failed)
        )
    return list(results)


def _libraries(libraries: Sequence[Path]) -> list[Path]:
    if not libraries:
        raise SmokeError("no libraries to smoke-test; run `invoke build` first or name some")
    out = []
    for lib in libraries:
        p = Path(lib).expanduser().resolve()
        if not p.is_file():
            raise SmokeError(f"{lib}: no such library")
        out.append(p)
    return out


# ----------------------------------------------------------------------------- image


def smoke_in_image(
    dk: Docker,
    lock: Lockfile,
    libraries: Sequence[Path],
    *,
    image: str,
    cache: Path | None = None,
    symbol: str | None = None,
    optional_symbol: str | None = "test",
    log: Log = print,
    on_line: Log | None = print,
    strict: bool = True,
    transport: Bind | None = None,
) -> list[SmokeResult]:
    """dlopen each library in the smoke ``image`` (a tag; it must exist), as nobody, offline.

    ``transport`` says how the library reaches the container (default: a bind mount; for a
    remote daemon :class:`tasks.builder.transport.Archive` copies it in).

    With ``cache``, a passing verdict is kept under ``<cache>/smoke/verdicts``, keyed by the
    library's sha256, the image's id and the harness arguments: the same bytes on the same
    image are not run again ("Using cached smoke result"); any change runs the harness.
    """
    libs = _libraries(libraries)
    where = f"{lock.target.name} (glibc {lock.target.glibc}, image {image})"
    args = harness_args(symbol, optional_symbol)
    image_id = _image_id(dk, image) if cache is not None else ""
    results = []
    for lib in libs:
        inside = f"/libs/{lib.name}"
        verdict = _verdict_path(cache, lib, image_id, args) if cache is not None else None
        cached = _cached_verdict(verdict, lib, where)
        if cached is not None:
            log(f"Using cached smoke result for {lib.name} on {lock.target.name} (glibc {lock.target.glibc})")
            results.append(cached)
            continue
        log(f"Smoke-testing {lib.name} on {lock.target.name} (glibc {lock.target.glibc})")
        status, output = (transport or Bind(dk)).run(
            image,
            [HARNESS_IN_IMAGE, *args, inside],
            [Mount(lib, inside)],
            on_line=on_line,
            user=NOBODY,
            network_disabled=True,
        )
        results.append(SmokeResult(lib, where, status, output))
        if verdict is not None and status == 0:
            write_atomic(verdict, json.dumps({"status": status, "output": output}).encode())
    return check(results) if strict else results


def _image_id(dk: Docker, tag: str) -> str:
    found = dk.image(tag)
    if found is None:
        raise SmokeError(f"smoke image {tag} does not exist; run `invoke smoke` to build it")
    return str(found.id)


def _verdict_path(cache: Path, lib: Path, image_id: str, args: Sequence[str]) -> Path:
    material = json.dumps({"library": sha256_file(lib), "name": lib.name, "image": image_id,
                           "harness": [HARNESS_IN_IMAGE, *args]}, sort_keys=True)
    return cache / "smoke" / "verdicts" / f"{hashlib.sha256(material.encode()).hexdigest()[:32]}.json"


def _cached_verdict(verdict: Path | None, lib: Path, where: str) -> SmokeResult | None:
    """The passing result recorded for exactly these inputs, or None (then the harness runs)."""
    if verdict is None:
        return None
    try:
        data = json.loads(verdict.read_text())
        status, output = int(data["status"]), str(data["output"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return SmokeResult(lib, where, status, output) if status == 0 else None


# ----------------------------------------------------------------------------- host


def _run(argv: list[str], lib: Path, where: str, on_line: Log | None) -> SmokeResult:
    try:
        proc = subprocess.run(  # noqa: S603 - argument list, no shell
            argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=TIMEOUT, check=False,
            env={**os.environ, "LC_ALL": "C"},
        )
    except subprocess.TimeoutExpired:
        return SmokeResult(lib, where, 124, f"smoke: timed out after {TIMEOUT}s")
    except OSError as exc:
        raise SmokeError(f"cannot run the smoke harness {argv[0]}: {exc.strerror or exc}") from None
    output = proc.stdout.decode(errors="replace")
    if on_line:
        for line in output.splitlines():
            on_line(line)
    return SmokeResult(lib, where, proc.returncode, output)


def smoke_native(
    libraries: Sequence[Path],
    *,
    symbol: str | None = None,
    optional_symbol: str | None = "test",
    cache: Path,
    on_line: Log | None = None,
    strict: bool = True,
) -> list[SmokeResult]:
    """dlopen each library on this machine's own glibc (``strict``: raise SmokeError on a failure)."""
    libs = _libraries(libraries)
    harness = compile_harness(cache)
    where = f"this machine ({os.confstr('CS_GNU_LIBC_VERSION') or 'glibc ?'})"
    args = harness_args(symbol, optional_symbol)
    results = [_run([str(harness), *args, str(lib)], lib, where, on_line) for lib in libs]
    return check(results) if strict else results


def sysroot_loader(sysroot: Path) -> tuple[Path, list[Path]]:
    """The sysroot's dynamic loader and its library directories (both layouts)."""
    dirs = [sysroot / d for d in LIB_DIRS if (sysroot / d).is_dir()]
    for d in dirs:
        if (d / LOADER).exists():
            return d / LOADER, dirs
    raise SysrootError(f"{sysroot}: no {LOADER} in {', '.join(LIB_DIRS)}; not a glibc sysroot")


def smoke_sysroot(
    libraries: Sequence[Path],
    sysroot: Path,
    *,
    symbol: str | None = None,
    optional_symbol: str | None = "test",
    cache: Path,
    on_line: Log | None = None,
    strict: bool = True,
) -> list[SmokeResult]:
    """dlopen each library under the sysroot's glibc, run by the sysroot's own loader."""
    libs = _libraries(libraries)
    sysroot = Path(sysroot).resolve()
    loader, dirs = sysroot_loader(sysroot)
    harness = compile_harness(cache, sysroot=sysroot)
    where = f"the sysroot {sysroot}"
    run = [str(loader), "--inhibit-cache", "--library-path", ":".join(map(str, dirs)),
           str(harness), *harness_args(symbol, optional_symbol)]
    results = [_run([*run, str(lib)], lib, where, on_line) for lib in libs]
    return check(results) if strict else results
