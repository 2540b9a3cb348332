"""Tasks for crates: build, audit, smoke, sysroot.

Each reads its flags into Settings, calls one :mod:`tasks.pipeline` run, and prints what
:mod:`tasks.present` words; the pipeline and its libraries are imported when a task runs,
so `invoke --list` costs what invoke costs.
"""

from __future__ import annotations

import dataclasses
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from invoke.context import Context
from invoke.tasks import task

from tasks.cli.common import LINKER_HELP, LOCK_HELP, TARGET_HELP, reports_errors, settings
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
) -> BuildResult:
    """Build a crate's cdylibs for the target's glibc (2.18 by default) in its builder image or with zig; audit them."""
    from tasks import pipeline, present

    s = settings(c, lock, target=target, linker=linker).with_backend(backend)
    if out:
        s = dataclasses.replace(s, out=Path(out).resolve())
    say = _stderr if json else print
    result = pipeline.build_run(s, Path(crate) if crate else None, log=say, on_line=say, release=not debug,
                                features=features, extra_args=_split(cargo_args), fix_weak=fix_weak)
    if json:
        print(present.build_json(result, pipeline.load_lock(s), s.backend))
    else:
        print(present.audit_text(result.audits))
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
    },
)
@reports_errors
def audit_(c: Context, path: list[str] | None = None, glibc: str = "", json: bool = False,
           fix: bool = False, lock: str = "", target: str = "") -> list[LibraryAudit]:
    """Read each library's ELF: versions needed (glibc, GCC, GLIBCXX, CXXABI) vs the target, DT_NEEDED."""
    from tasks import pipeline, present

    s = settings(c, lock, target=target)
    audits = pipeline.audit_run(s, [Path(p) for p in path or []], glibc=glibc, fix=fix)
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
    },
)
@reports_errors
def smoke_(c: Context, lib: list[str] | None = None, symbol: str = "", sysroot: str = "",
           current: bool = True, matrix: bool = False, json: bool = False, lock: str = "",
           target: str = "") -> list[SmokeResult] | list[Cell]:
    """dlopen(RTLD_NOW) each library on the target's old glibc (and the current one); --matrix: on every glibc."""
    from tasks import pipeline, present

    s = settings(c, lock, target=target)
    say = _stderr if json else print
    libs = pipeline.smoke_libraries(s, [Path(p) for p in lib or []], log=say)
    lf = pipeline.load_lock(s)
    if matrix:
        cells = pipeline.matrix_run(s, libs, symbol=symbol or None, log=say)
        print(present.matrix_json(lf, cells) if json else present.matrix_text(cells))
        failure = pipeline.matrix_failures(cells)
        if failure:
            raise failure
        return cells
    results = pipeline.smoke_run(s, libs, symbol=symbol or None, sysroot=Path(sysroot) if sysroot else None,
                                 current=current, log=say, on_line=say, strict=False)
    failure = pipeline.smoke_failure(results)
    if json:  # CI gets its JSON before the one-line error and exit 11
        print(present.smoke_json(lf, results, str(failure) if failure else None))
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
