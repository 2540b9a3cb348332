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
  libc, libdl and libgcc_s all come from the old glibc, no container needed. A sysroot of
  another arch (arm64 Debian) gets a harness cross-compiled by the pinned zig
  (:class:`tasks.dlopen.harness.CrossCC`), and its loader runs under qemu-user:
  ``qemu-aarch64-static -L <sysroot> <sysroot>/lib/ld-linux-aarch64.so.1 --library-path ...``.

A library of another arch than the place's (an x86_64 library offered to an aarch64 sysroot)
is refused in one line before anything runs (:func:`tasks.arches.mismatch`).

A failure raises SmokeError carrying the loader's own dlerror() text, e.g.
``version `GLIBC_2.34' not found``: exactly what a host program would print.

Each place honours a host mode (:mod:`tasks.dlopen.hostmode`): the library's host symbols
stubbed, the host's real library, or nothing, preloaded (``--preload``) before the library.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from tasks import arches
from tasks.arches import Arch
from tasks.atomic import write_atomic
from tasks.builder.docker_client import Docker
from tasks.builder.transport import Bind, Mount
from tasks.dlopen.harness import HARNESS_C as HARNESS_C  # re-exported: the harness lives in harness.py
from tasks.dlopen.harness import CrossCC, compile_harness, compile_stub, sysroot_arch
from tasks.dlopen.harness import sysroot_link as sysroot_link
from tasks.dlopen.hostmode import STUB_FLAGS, HostMode, HostPlan, plan
from tasks.dlopen.hostrun import IN_IMAGE, HostRun, Offer, in_image_result, run_native
from tasks.dlopen.result import SmokeResult as SmokeResult  # re-exported: every place's result
from tasks.errors import SmokeError, SysrootError
from tasks.inputs.lockfile import Lockfile
from tasks.store import digest_of, sha256_file

HARNESS_IN_IMAGE = "compatbuild-smoke"
STUB_IN_IMAGE = "/tmp/compatbuild-host-stub.so"  # built in the container by the image's own gcc
NOBODY = "65534:65534"
TIMEOUT = 120
Log = Callable[[str], None]


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
    host: HostMode | None = None,
) -> list[SmokeResult]:
    """dlopen each library in the smoke ``image`` (a tag; it must exist), as nobody, offline.

    ``transport`` says how the library reaches the container (default: a bind mount; for a
    remote daemon :class:`tasks.builder.transport.Archive` copies it in).

    With ``cache``, a passing verdict is kept under ``<cache>/smoke/verdicts``, keyed by the
    library's sha256, the image's id, the harness arguments and the host plan (mode, stub,
    host library, exports list): the same bytes on the same image are not run again ("Using
    cached smoke result"); any change runs the harness. A stub is compiled in the container
    by the image's own gcc, then preloaded.
    """
    libs = _libraries(libraries)
    where = f"{lock.target.name} (glibc {lock.target.glibc}, image {image})"
    args = harness_args(symbol, optional_symbol)
    image_id = _image_id(dk, image) if cache is not None else ""
    results = []
    for lib in libs:
        inside = f"/libs/{lib.name}"
        hp = plan(lib, host, None)
        if hp.failure:
            results.append(SmokeResult(lib, where, hp.failure_status, hp.failure))
            continue
        verdict = _verdict_path(cache, lib, image_id, args, hp) if cache is not None else None
        cached = _cached_verdict(verdict, lib, where, hp)
        if cached is not None:
            log(f"Using cached smoke result for {lib.name} on {lock.target.name} (glibc {lock.target.glibc})")
            results.append(cached)
            continue
        log(f"Smoke-testing {lib.name} on {lock.target.name} (glibc {lock.target.glibc})")
        mounts = [Mount(lib, inside)]
        command = [HARNESS_IN_IMAGE, *_preload_args(hp, STUB_IN_IMAGE), *args, inside]
        with tempfile.TemporaryDirectory(prefix="compatbuild-stub-") as scratch:
            if hp.stub:
                source = Path(scratch) / "stub.c"
                source.write_text(hp.stub_source(lib.name))
                source.chmod(0o644)
                Path(scratch).chmod(0o755)
                mounts.append(Mount(source, "/host/stub.c"))
                command = ["sh", "-c", _BUILD_STUB, "sh", STUB_IN_IMAGE, "/host/stub.c", *command]
            status, output = (transport or Bind(dk)).run(
                image, command, mounts, on_line=on_line, user=NOBODY, network_disabled=True,
            )
        result = SmokeResult(lib, where, status, output, hp.note)
        if result.ok and host is not None and host.command is not None:
            log(f"Running {host.command.program} on {lib.name} in {image}")
            offer = Offer.of(lib)
            status, output = (transport or Bind(dk)).run(
                image, ["sh", "-c", host.command.image_script(offer)], [Mount(lib, f"{IN_IMAGE}/{offer.filename}")],
                on_line=on_line, user=NOBODY, network_disabled=True,
            )
            result = with_host_run(result, in_image_result(host.command, status, output, f"the image {image}"),
                                   optional=host.program_optional)
        results.append(result)
        if verdict is not None and result.ok:
            write_atomic(verdict, json.dumps({"status": result.status, "output": result.output,
                                              "host": result.host}).encode())
    return check(results) if strict else results


def with_host_run(result: SmokeResult, run: HostRun, *, optional: bool) -> SmokeResult:
    """``result`` (the harness's) with what the host program did after it: a note when it ran,
    or was absent where that is allowed (``optional``); else its failure line."""
    note = "; ".join(filter(None, [result.host, run.note]))
    output = result.output + run.output
    if run.ok or (run.absent and optional):
        return dataclasses.replace(result, output=output, host=note)
    return SmokeResult(result.library, result.where, run.status or 1, f"{output.rstrip()}\n{run.failure}\n", note)


# In the container: build the stub with the image's own gcc, then run the harness (exec "$@").
_BUILD_STUB = ('out=$1; src=$2; shift 2; gcc ' + " ".join(STUB_FLAGS) + ' -o "$out" "$src" '
               '|| { echo "smoke: host stub did not compile in the image" >&2; exit 7; }; exec "$@"')


def _preload_args(hp: HostPlan, stub: str) -> list[str]:
    """The harness's ``--preload`` for this plan: the stub (at ``stub``), the host library, or none."""
    if hp.stub:
        return ["--preload", stub]
    if hp.host_lib:
        return ["--preload", hp.host_lib]
    return []


def _image_id(dk: Docker, tag: str) -> str:
    found = dk.image(tag)
    if found is None:
        raise SmokeError(f"smoke image {tag} does not exist; run `invoke smoke` to build it")
    return str(found.id)


def _verdict_path(cache: Path, lib: Path, image_id: str, args: Sequence[str], hp: HostPlan) -> Path:
    material = {"library": sha256_file(lib), "name": lib.name, "image": image_id,
                "harness": [HARNESS_IN_IMAGE, *args], "host": hp.material()}
    return cache / "smoke" / "verdicts" / f"{digest_of(material)[:32]}.json"


def _cached_verdict(verdict: Path | None, lib: Path, where: str, hp: HostPlan) -> SmokeResult | None:
    """The passing result recorded for exactly these inputs, or None (then the harness runs)."""
    if verdict is None:
        return None
    try:
        data = json.loads(verdict.read_text())
        status, output, note = int(data["status"]), str(data["output"]), str(data.get("host", hp.note))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return SmokeResult(lib, where, status, output, note, cached=True) if status == 0 else None


# ----------------------------------------------------------------------------- host


def _run(argv: list[str], lib: Path, where: str, on_line: Log | None, host: str = "") -> SmokeResult:
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
    return SmokeResult(lib, where, proc.returncode, output, host)


def _run_with_host(run: list[str], libs: Sequence[Path], where: str, on_line: Log | None, *,
                   host: HostMode | None, root: Path, cache: Path, sysroot: Path | None = None,
                   cross: CrossCC | None = None) -> list[SmokeResult]:
    """Each library run by ``run`` (the harness argv, up to its flags), its host plan's preload first."""
    results = []
    for lib in libs:
        hp = plan(lib, host, root, _host_lib_in(host, sysroot))
        if hp.failure:
            results.append(SmokeResult(lib, where, hp.failure_status, hp.failure))
            continue
        stub = str(compile_stub(cache, hp.stub_source(lib.name), sysroot=sysroot, cross=cross)) if hp.stub else ""
        result = _run([*run, *_preload_args(hp, stub), str(lib)], lib, where, on_line, hp.note)
        if result.ok and host is not None and host.command is not None:
            ran = (HostRun(host.command, 127, "", "a sysroot (it has no programs to run)", absent=True)
                   if sysroot is not None else run_native(host.command, lib))
            result = with_host_run(result, ran, optional=True)  # the target's image is where it must run
        results.append(result)
    return results


def _host_lib_in(host: HostMode | None, sysroot: Path | None) -> str:
    """The host library's path as the harness sees it: inside ``sysroot`` when it is there."""
    if host is None or not host.host_lib or sysroot is None:
        return host.host_lib if host else ""
    inside = sysroot / host.host_lib.lstrip("/")
    return str(inside) if inside.exists() else host.host_lib


def smoke_native(
    libraries: Sequence[Path],
    *,
    symbol: str | None = None,
    optional_symbol: str | None = "test",
    cache: Path,
    on_line: Log | None = None,
    strict: bool = True,
    host: HostMode | None = None,
) -> list[SmokeResult]:
    """dlopen each library on this machine's own glibc (``strict``: raise SmokeError on a failure)."""
    libs = _libraries(libraries)
    where = f"this machine ({os.confstr('CS_GNU_LIBC_VERSION') or 'glibc ?'})"
    refused, libs = _refuse_other_arch(libs, arches.host() or arches.X86_64, where)

    def run(rest: list[Path]) -> list[SmokeResult]:
        harness = compile_harness(cache)
        args = harness_args(symbol, optional_symbol)
        return _run_with_host([str(harness), *args], rest, where, on_line, host=host, root=Path("/"), cache=cache)

    results = _in_order(libraries, refused, run(libs) if libs else [])
    return check(results) if strict else results


ARCH_STATUS = 8  # a SmokeResult status: the library is of another arch than the place (nothing ran)


def _refuse_other_arch(libs: list[Path], arch: Arch, where: str) -> tuple[dict[Path, SmokeResult], list[Path]]:
    """(the refused libraries' results, the others): one line each, before anything runs."""
    refused = {lib: SmokeResult(lib, where, ARCH_STATUS, f"smoke: refused: {why}\n")
               for lib in libs if (why := arches.mismatch(lib, arch))}
    return refused, [lib for lib in libs if lib not in refused]


def _in_order(given: Sequence[Path], refused: dict[Path, SmokeResult], ran: list[SmokeResult]) -> list[SmokeResult]:
    """The results in the order the libraries were given: refused ones where they stood."""
    rest = iter(ran)
    return [refused[p] if p in refused else next(rest) for p in _libraries(given)]


def sysroot_loader(sysroot: Path) -> tuple[Path, list[Path]]:
    """The sysroot's dynamic loader and its library directories (both layouts, its own arch)."""
    arch = sysroot_arch(sysroot)
    dirs = [sysroot / d for d in arch.lib_dirs if (sysroot / d).is_dir()]
    for d in dirs:
        if (d / arch.loader).exists():
            return d / arch.loader, dirs
    raise SysrootError(f"{sysroot}: no {arch.loader} in {', '.join(arch.lib_dirs)}; not a glibc sysroot")


def qemu_prefix(sysroot: Path, arch: Arch) -> list[str]:
    """What runs the sysroot's loader: nothing on this machine's arch, else qemu-user for ``arch``
    (``-L``: the guest's absolute paths are looked up inside the sysroot first)."""
    if arch == (arches.host() or arches.X86_64):
        return []
    exe = shutil.which(arch.qemu)
    if exe is None:
        raise SmokeError(f"no {arch.qemu} on PATH to run the {arch.name} sysroot {sysroot}; install "
                         "Debian's qemu-user-static")
    return [exe, "-L", str(sysroot)]


def smoke_sysroot(
    libraries: Sequence[Path],
    sysroot: Path,
    *,
    symbol: str | None = None,
    optional_symbol: str | None = "test",
    cache: Path,
    on_line: Log | None = None,
    strict: bool = True,
    host: HostMode | None = None,
    cross: CrossCC | None = None,
) -> list[SmokeResult]:
    """dlopen each library under the sysroot's glibc, run by the sysroot's own loader (under
    qemu-user for another arch, the harness then built by ``cross``); its host symbols are
    judged on the sysroot's own libraries. A library of another arch is refused first."""
    libs = _libraries(libraries)
    sysroot = Path(sysroot).resolve()
    loader, dirs = sysroot_loader(sysroot)
    arch = sysroot_arch(sysroot)
    where = f"the sysroot {sysroot}"
    refused, libs = _refuse_other_arch(libs, arch, where)
    ran: list[SmokeResult] = []
    if libs:
        harness = compile_harness(cache, sysroot=sysroot, cross=cross)
        run = [*qemu_prefix(sysroot, arch), str(loader), "--inhibit-cache", "--library-path",
               ":".join(map(str, dirs)), str(harness), *harness_args(symbol, optional_symbol)]
        ran = _run_with_host(run, libs, where, on_line, host=host, root=sysroot, cache=cache, sysroot=sysroot,
                             cross=cross)
    results = _in_order(libraries, refused, ran)
    return check(results) if strict else results
