"""Tasks for crates: build, audit, smoke, sysroot.

Each reads its flags into Settings, calls one :mod:`tasks.pipeline` run, and prints what
:mod:`tasks.present` words; the pipeline and its libraries are imported when a task runs,
so `invoke --list` costs what invoke costs. With ``--json`` each prints its document also
when it fails, first, with ``"ok": false`` and the one-line error in ``"error"``.
"""

from __future__ import annotations

import dataclasses
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from invoke.context import Context
from invoke.tasks import task

from tasks.cli.common import (
    LINKER_HELP,
    LOCK_HELP,
    TARGET_HELP,
    json_document_on_failure,
    reports_errors,
    settings,
)
from tasks.errors import ConfigError

if TYPE_CHECKING:
    from tasks.present import BuildResult, Cell, LibraryAudit, SmokeResult


@task(
    auto_shortflags=False,
    name="build",
    help={
        "crate": "path of the crate to build (default: the bundled example, examples/hello)",
        "out": "folder for the built .so files (default: config compatbuild.out, ./out)",
        "lock": LOCK_HELP,
        "debug": "build the debug profile instead of --release",
        "features": "cargo features to enable, comma-separated",
        "cargo_args": "extra arguments for cargo build, as one shell-quoted string",
        "json": "print a JSON summary (libraries and audit) instead of text",
        "fix_weak": "mark weak the version needs whose references are all weak (default: yes; "
        "--no-fix-weak keeps the linker's output as it is)",
        "target": TARGET_HELP,
        "linker": LINKER_HELP,
        "backend": "docker (the target's builder image) or zig (cargo-zigbuild and the host's "
        "Rust, no Docker) (default: config compatbuild.backend, docker)",
        "warm": "docker backend: build by docker exec in a container kept running between builds, stopped "
        "after config compatbuild.warm_idle seconds unused (default: yes, 300; --no-warm: a new container "
        "per build)",
    },
)
@reports_errors
def build_(
    c: Context,
    crate: str = "",
    out: str = "",
    lock: str = "",
    debug: bool = False,
    features: str = "",
    cargo_args: str = "",
    json: bool = False,
    fix_weak: bool = True,
    target: str = "",
    linker: str = "",
    backend: str = "",
    warm: bool = True,
) -> BuildResult:
    """Build a crate's cdylibs for the target's glibc (2.18 by default) in its builder image or with zig; audit them."""
    from tasks import pipeline, present

    with json_document_on_failure(json, "build"):
        s = settings(c, lock, target=target, linker=linker).with_backend(backend)
        if out:
            s = dataclasses.replace(s, out=Path(out).resolve())
        if not warm:
            s = dataclasses.replace(s, warm_idle=0)
        say = _stderr if json else print
        result = pipeline.build_run(s, Path(crate) if crate else None, log=say, on_line=say, release=not debug,
                                    features=features, extra_args=_split(cargo_args), fix_weak=fix_weak)
        lf = pipeline.load_lock(s)
    if json:  # with "ok" and the violation in "error" before the one-line error and exit 10
        print(present.build_json(result, lf, s.backend))
    else:
        print(present.audit_text(result.audits, retain_note=pipeline.retain_note_due(s, result.audits)))
        for p in result.libraries:
            print(p)
    pipeline.raise_on_violation(result.audits)
    return result


@task(
    auto_shortflags=False,
    name="audit",
    iterable=["path"],
    help={
        "path": "a library to audit (repeatable; default: the last build's libraries)",
        "glibc": "target glibc version (default: the lockfile's target)",
        "json": "print the report as JSON, for CI",
        "fix": "first mark weak every version need whose references are all weak (edits each library)",
        "lock": LOCK_HELP,
        "target": TARGET_HELP + "; its glibc, libgcc_s, libstdc++ and libz versions are the limits",
        "sysroot": "check the symbols left to the host against this sysroot's own libraries "
        "(default: every unversioned undefined symbol is the host's)",
    },
)
@reports_errors
def audit_(c: Context, path: list[str] | None = None, glibc: str = "", json: bool = False,
           fix: bool = False, lock: str = "", target: str = "", sysroot: str = "") -> list[LibraryAudit]:
    """Read each library's ELF: versions needed (glibc, GCC, GLIBCXX, CXXABI) vs the target, DT_NEEDED."""
    from tasks import pipeline, present

    with json_document_on_failure(json, "audit"):
        s = settings(c, lock, target=target)
        audits = pipeline.audit_run(s, [Path(p) for p in path or []], glibc=glibc, fix=fix,
                                    sysroot=Path(sysroot).resolve() if sysroot else None)
    print(present.audit_json(audits) if json else present.audit_text(audits))
    pipeline.raise_on_violation(audits)
    return audits


@task(
    auto_shortflags=False,
    name="smoke",
    iterable=["lib"],
    help={
        "lib": "a library to load (repeatable; default: the last build, else build the example)",
        "symbol": "look up this symbol and call it (default: call `test` only if it exists)",
        "sysroot": "run under this folder's glibc via its own loader instead of Docker",
        "current": "also load on this machine's current glibc (default: yes)",
        "matrix": "load on every glibc within reach (pinned .deb and RPM sysroots, the target image "
        "when Docker is there, this machine) and print a table",
        "json": "print the results (with --matrix, the table) as JSON, for CI (progress goes to stderr)",
        "lock": LOCK_HELP,
        "target": TARGET_HELP,
        "host_mode": "how the symbols a plugin leaves to its host are provided: stub (a generated library "
        "defining them, loaded first), strict (none) (default: config compatbuild.host_mode, auto: stub "
        "when the library has host symbols)",
        "host_lib": "preload this real host library (a path inside the image or sysroot) instead of a stub",
        "host_symbols": "a file listing what the host exports, one name a line: a host symbol outside it fails",
        "host": "then run the real host program, e.g. 'python3 -c \"import {module}\"' ({module}, {path}, "
        "{dir}: the library as the host looks for it, mymod.so from libmymod.so), in the smoke image and "
        "on this machine (--matrix: where the program exists)",
    },
)
@reports_errors
def smoke_(c: Context, lib: list[str] | None = None, symbol: str = "", sysroot: str = "",
           current: bool = True, matrix: bool = False, json: bool = False, lock: str = "",
           target: str = "", host_mode: str = "", host_lib: str = "",
           host_symbols: str = "", host: str = "") -> list[SmokeResult] | list[Cell]:
    """dlopen(RTLD_NOW) each library on the target's old glibc (and the current one); --matrix: on every glibc."""
    from tasks import pipeline, present

    with json_document_on_failure(json, "matrix" if matrix else "smoke"):
        s = settings(c, lock, target=target)
        say = _stderr if json else print
        libs = pipeline.smoke_libraries(s, [Path(p) for p in lib or []], log=say)
        lf = pipeline.load_lock(s)
        if matrix:
            cells = pipeline.matrix_run(s, libs, symbol=symbol or None, log=say, host_mode=host_mode,
                                        host_lib=host_lib, host_symbols=host_symbols, host_command=host)
        else:
            results = pipeline.smoke_run(s, libs, symbol=symbol or None,
                                         sysroot=Path(sysroot) if sysroot else None, current=current, log=say,
                                         on_line=say, strict=False, host_mode=host_mode, host_lib=host_lib,
                                         host_symbols=host_symbols, host_command=host)
    if matrix:
        failure = pipeline.matrix_failures(cells)
        print(present.matrix_json(lf, cells, str(failure) if failure else None) if json
              else present.matrix_text(cells))
        if failure:
            raise failure
        return cells
    failure = pipeline.smoke_failure(results)
    if json:  # CI gets its JSON before the one-line error and exit 11
        print(present.smoke_json(lf, results, str(failure) if failure else None))
    elif text := present.smoke_text(results):
        print(text)
    if failure:
        raise failure
    return results


@task(
    auto_shortflags=False,
    name="sysroot",
    help={"dest": "folder to create (default: <cache>/sysroot-<target>)", "lock": LOCK_HELP,
          "target": TARGET_HELP},
)
@reports_errors
def sysroot_(c: Context, dest: str = "", lock: str = "", target: str = "") -> Path:
    """Unpack the pinned glibc RPMs into a sysroot, for `invoke smoke --sysroot` without Docker."""
    from tasks import pipeline

    made = pipeline.sysroot_run(settings(c, lock, target=target), Path(dest).resolve() if dest else None)
    print(made)
    return made


def _split(args: str) -> tuple[str, ...]:
    try:
        return tuple(shlex.split(args))
    except ValueError as exc:
        raise ConfigError(f"--cargo-args {args!r}: {exc}") from None


def _stderr(line: str) -> None:
    print(line, file=sys.stderr)


TASKS = [build_, audit_, smoke_, sysroot_]
