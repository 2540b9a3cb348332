"""Tasks for crates: build, audit, smoke, sysroot."""

from __future__ import annotations

import dataclasses
import json as jsonlib  # `json` is also build's and audit's flag
import platform
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from invoke.context import Context
from invoke.tasks import task

from tasks import pipeline
from tasks.builder import docker_client
from tasks.cli.common import LINKER_HELP, LOCK_HELP, TARGET_HELP, lock_of, reports_errors, settings
from tasks.crates import audit as audit_lib
from tasks.crates import build as build_lib
from tasks.crates import fixup as fixup_lib
from tasks.crates import matrix as matrix_lib
from tasks.crates import smoke as smoke_lib
from tasks.crates import sysroot as sysroot_lib
from tasks.errors import CompatError, ConfigError, DockerError, SmokeError
from tasks.inputs import lockfile
from tasks.settings import PROJECT_ROOT, Settings
from tasks.store import Store

EXAMPLE_CRATE = PROJECT_ROOT / "examples" / "hello"


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
) -> build_lib.BuildResult:
    """Build a crate's cdylibs for the target's glibc (2.18 by default) in its builder image or with zig; audit them."""
    s = settings(c, lock, target=target, linker=linker).with_backend(backend)
    if out:
        s = dataclasses.replace(s, out=Path(out).resolve())
    lf = lock_of(s)
    result, audits = _build_and_audit(
        s, lf, Path(crate or EXAMPLE_CRATE), log=_stderr if json else print,
        release=not debug, features=features, extra_args=_split(cargo_args), fix_weak=fix_weak,
    )
    if json:
        print(jsonlib.dumps({"libraries": [str(p) for p in result.libraries], "image": result.image_tag,
                             "target": {"name": lf.target.name, "glibc": lf.target.glibc},
                             "linker": lf.linker, "backend": s.backend,
                             "audit": [a.to_dict() for a in audits]}, indent=2))
    else:
        print(audit_lib.format_report(audits))
        for p in result.libraries:
            print(p)
    audit_lib.raise_on_violation(audits)
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
           fix: bool = False, lock: str = "", target: str = "") -> list[audit_lib.LibraryAudit]:
    """Read each library's ELF: versions needed (glibc, GCC, GLIBCXX, CXXABI) vs the target, DT_NEEDED."""
    s = settings(c, lock, target=target)
    lf = lock_of(s)
    paths = [Path(p) for p in path] if path else build_lib.last_build(s.out, lf.target.name).libraries
    fixups = [fixup_lib.fix_weak_needs(p) for p in paths] if fix else []
    if glibc:
        audits = audit_lib.audit_paths(paths, target_glibc=glibc, fixups=fixups)
    else:
        audits = pipeline.audit(paths, lf, fixups=fixups)
    print(audit_lib.report_json(audits) if json else audit_lib.format_report(audits))
    audit_lib.raise_on_violation(audits)
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
           target: str = "") -> list[smoke_lib.SmokeResult] | list[matrix_lib.Cell]:
    """dlopen(RTLD_NOW) each library on the target's old glibc (and the current one); --matrix: on every glibc."""
    s = settings(c, lock, target=target)
    lf = lock_of(s)
    say = _stderr if json else print
    if lib:
        libs = [Path(p).resolve() for p in lib]
    else:
        libs = _last_or_example(s, lf, log=say)
    sym = symbol or None
    if matrix:
        return _matrix(s, lf, libs, sym, as_json=json)
    results: list[smoke_lib.SmokeResult] = []
    head = {"target": {"name": lf.target.name, "glibc": lf.target.glibc}}
    try:
        if sysroot:
            say(f"Smoke-testing {len(libs)} librar{'y' if len(libs) == 1 else 'ies'} under the glibc of {sysroot}")
            results = smoke_lib.smoke_sysroot(libs, Path(sysroot), symbol=sym, cache=s.cache, on_line=say)
        else:
            results = pipeline.smoke(docker_client.connect(), lf, s, libs, symbol=sym, log=say, on_line=say)
        if current:
            say(f"Smoke-testing on this machine's glibc {platform.libc_ver()[1] or '?'}")
            results += smoke_lib.smoke_native(libs, symbol=sym, cache=s.cache, on_line=say)
    except SmokeError as exc:  # the one-line error and exit 11 follow; CI still gets its JSON
        if json:
            print(jsonlib.dumps({**head, "ok": False, "error": str(exc), "results": _results(results)}, indent=2))
        raise
    if json:
        print(jsonlib.dumps({**head, "ok": True, "error": None, "results": _results(results)}, indent=2))
    return results


def _results(results: list[smoke_lib.SmokeResult]) -> list[dict[str, object]]:
    return [{"library": str(r.library), "where": r.where, "ok": r.ok, "status": r.status, "error": r.error}
            for r in results]


def _matrix(s: Settings, lf: lockfile.Lockfile, libs: list[Path], symbol: str | None, *,
            as_json: bool) -> list[matrix_lib.Cell]:
    try:
        dk: docker_client.Docker | None = docker_client.connect()
    except DockerError:
        dk = None
    cells = pipeline.smoke_matrix(dk, lf, s, libs, symbol=symbol, log=_stderr if as_json else print)
    if as_json:
        print(jsonlib.dumps({"target": {"name": lf.target.name, "glibc": lf.target.glibc},
                             "cells": [cell.to_dict() for cell in cells]}, indent=2))
    else:
        print(matrix_lib.table(cells))
    bad = matrix_lib.failed(cells)
    if bad:
        raise SmokeError("; ".join(f"{b.library.name} failed on {b.place.name} (glibc {b.place.glibc}): {b.text}"
                                   for b in bad))
    return cells


def _last_or_example(s: Settings, lf: lockfile.Lockfile, *, log: Callable[[str], None] = print) -> list[Path]:
    try:
        return list(build_lib.last_build(s.out, lf.target.name).libraries)
    except CompatError:
        pass
    log(f"Nothing built yet: building the bundled example {EXAMPLE_CRATE}")
    result, audits = _build_and_audit(s, lf, EXAMPLE_CRATE, log=log)
    log(audit_lib.format_report(audits))
    audit_lib.raise_on_violation(audits)
    return list(result.libraries)


def _build_and_audit(
    s: Settings, lf: lockfile.Lockfile, crate: Path, *, log: Callable[[str], None] = print, **cargo: Any
) -> tuple[build_lib.BuildResult, list[audit_lib.LibraryAudit]]:
    """Build ``crate`` in the builder image and audit what it produced against the target."""
    dk = docker_client.connect() if s.backend == "docker" else None
    result = pipeline.build(dk, lf, s, crate, log=log, on_line=log, **cargo)
    return result, pipeline.audit(result.libraries, lf, fixups=result.fixups)


@task(
    auto_shortflags=False,
    name="sysroot",
    help={"dest": "folder to create (default: <cache>/sysroot-<target>)", "lock": LOCK_HELP,
          "target": TARGET_HELP},
)
@reports_errors
def sysroot_(c: Context, dest: str = "", lock: str = "", target: str = "") -> Path:
    """Unpack the pinned glibc RPMs into a sysroot, for `invoke smoke --sysroot` without Docker."""
    s = settings(c, lock, target=target)
    lf = lock_of(s)
    where = Path(dest).resolve() if dest else s.cache / f"sysroot-{lf.target.name}"
    made = sysroot_lib.make_sysroot(lf, Store(s.cache), where)
    print(made)
    return made


def _split(args: str) -> list[str]:
    try:
        return shlex.split(args)
    except ValueError as exc:
        raise ConfigError(f"--cargo-args {args!r}: {exc}") from None


def _stderr(line: str) -> None:
    print(line, file=sys.stderr)


TASKS = [build_, audit_, smoke_, sysroot_]
