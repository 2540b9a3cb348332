"""Prove a library loads: ``dlopen(path, RTLD_NOW)`` it under an old glibc and call a symbol.

Three places to do it, one harness (``docker/smoke/harness.c``) and one verdict:

- ``smoke_in_image``: the harness baked into the smoke image (the target's own gcc and
  glibc), run as nobody with no network, each library mounted read-only at /libs/<name>
  (given the image's tag: :func:`tasks.pipeline.smoke` makes the image);
- ``smoke_native``: the harness built by the host's cc, run on this machine's glibc;
- ``smoke_sysroot``: the harness built by the host's gcc *against* a sysroot
  (``gcc --sysroot``), run by that sysroot's own loader
  (``<sysroot>/lib64/ld-linux-x86-64.so.2 --inhibit-cache --library-path ...``), so
  libc, libdl and libgcc_s all come from the old glibc, no container needed.

A failure raises SmokeError carrying the loader's own dlerror() text, e.g.
``version `GLIBC_2.34' not found``: exactly what a host program would print.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tasks.atomic import ensure_file, write_atomic
from tasks.builder.docker_client import Docker
from tasks.builder.stages import DOCKER_DIR
from tasks.crates.sysroot import STAMP as SYSROOT_STAMP
from tasks.crates.transport import Bind, Mount
from tasks.errors import SmokeError, SysrootError
from tasks.inputs.lockfile import Lockfile
from tasks.store import sha256_file

HARNESS_C = DOCKER_DIR / "smoke" / "harness.c"
HARNESS_IN_IMAGE = "compatbuild-smoke"
NOBODY = "65534:65534"
TIMEOUT = 120
LOADER = "ld-linux-x86-64.so.2"
# Library directories of both layouts: Fedora (lib64) and Debian multiarch.
LIB_DIRS = ("lib64", "usr/lib64", "lib/x86_64-linux-gnu", "usr/lib/x86_64-linux-gnu",
            "lib", "usr/lib")
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
    transport: Bind | None = None,
) -> list[SmokeResult]:
    """dlopen each library in the smoke ``image`` (a tag; it must exist), as nobody, offline.

    ``transport`` says how the library reaches the container (default: a bind mount; for a
    remote daemon :class:`tasks.crates.transport.Archive` copies it in).

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
    return check(results)


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


def compile_harness(cache: Path, *, sysroot: Path | None = None, cc: str | None = None) -> Path:
    """The harness built by the host compiler (against ``sysroot`` if given), cached by the
    hash of its source, compiler and sysroot."""
    compiler = cc or os.environ.get("CC") or ("gcc" if sysroot else "cc")
    exe = shutil.which(compiler)
    if exe is None:
        raise SmokeError(f"no C compiler '{compiler}' on PATH to build the smoke harness")
    flags = ["-O2", "-Wall"]
    if sysroot is not None:
        flags.append(f"--sysroot={sysroot}")
        for d in LIB_DIRS:  # Debian's gcc does not search <sysroot>/usr/lib64 by itself
            if (sysroot / d).is_dir():
                flags += [f"-B{sysroot / d}", f"-L{sysroot / d}"]
    source = HARNESS_C.read_bytes()
    stamp = (sysroot / SYSROOT_STAMP) if sysroot else None
    key = hashlib.sha256(
        b"\0".join([source, exe.encode(), " ".join(flags).encode(),
                    stamp.read_bytes() if stamp and stamp.is_file() else b""])
    ).hexdigest()[:20]
    out = cache / "smoke" / f"harness-{key}"

    def compile_to(tmp: Path) -> None:
        proc = subprocess.run(  # noqa: S603 - argument list, no shell
            [exe, *flags, "-o", str(tmp), str(HARNESS_C), "-ldl"],
            capture_output=True, text=True, timeout=300, check=False,
        )
        if proc.returncode != 0:
            why = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            place = f" against {sysroot}" if sysroot else ""
            raise SmokeError(f"cannot compile the smoke harness{place}: {why}")

    ensure_file(out, compile_to)
    return out


def smoke_native(
    libraries: Sequence[Path],
    *,
    symbol: str | None = None,
    optional_symbol: str | None = "test",
    cache: Path,
    on_line: Log | None = None,
) -> list[SmokeResult]:
    """dlopen each library on this machine's own glibc."""
    libs = _libraries(libraries)
    harness = compile_harness(cache)
    where = f"this machine ({os.confstr('CS_GNU_LIBC_VERSION') or 'glibc ?'})"
    args = harness_args(symbol, optional_symbol)
    return check([_run([str(harness), *args, str(lib)], lib, where, on_line) for lib in libs])


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
) -> list[SmokeResult]:
    """dlopen each library under the sysroot's glibc, run by the sysroot's own loader."""
    libs = _libraries(libraries)
    sysroot = Path(sysroot).resolve()
    loader, dirs = sysroot_loader(sysroot)
    harness = compile_harness(cache, sysroot=sysroot)
    where = f"the sysroot {sysroot}"
    run = [str(loader), "--inhibit-cache", "--library-path", ":".join(map(str, dirs)),
           str(harness), *harness_args(symbol, optional_symbol)]
    return check([_run([*run, str(lib)], lib, where, on_line) for lib in libs])
