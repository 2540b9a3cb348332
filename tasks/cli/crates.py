"""Tasks for crates: build, audit, smoke, sysroot.

Each reads its flags into Settings, calls one :mod:`tasks.pipeline` run, and prints what
:mod:`tasks.present` words; the pipeline and its libraries are imported when a task runs,
so `invoke --list` costs what invoke costs. With ``--json`` each prints its document also
when it fails, first, with ``"ok": false`` and the one-line error in ``"error"``.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
from pathlib import Path
from typing import TYPE_CHECKING

from invoke.context import Context
from invoke.tasks import task

from tasks import memo
from tasks.cli.common import (
    LINKER_HELP,
    LOCK_HELP,
    TARGET_HELP,
    json_document_on_failure,
    reports_errors,
    settings,
    value_is_used,
)
from tasks.errors import ConfigError

if TYPE_CHECKING:
    from tasks.present import BuildResult, Cell, LibraryAudit, SmokeResult
    from tasks.settings import Settings


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
        "warm": "docker backend: build in a container kept running between builds (its resident runner starts "
        "cargo, else docker exec), stopped "
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
    with json_document_on_failure(json, "build"):
        s = settings(c, lock, target=target, linker=linker).with_backend(backend)
        if out:
            s = dataclasses.replace(s, out=Path(out).resolve())
        extra = _split(cargo_args)
        arguments = {"settings": _key(s), "crate": str(Path(crate).resolve()) if crate else "",
                     "release": not debug, "features": features, "cargo_args": extra, "fix_weak": fix_weak}
        run = memo.Run(s.cache, "build", {**arguments, "json": json})
        if (hit := memo.replay(run, value=value_is_used())) is not None:  # nothing changed since the recorded build
            return memo.play(hit)  # type: ignore[no-any-return]
        if not warm:
            s = dataclasses.replace(s, warm_idle=0)
        from tasks.backends import headstart

        plan_run = memo.Run(s.cache, "build-plan", arguments)  # what the build ran: the next one's head start
        early = headstart.start(plan_run) if s.backend == "zig" or s.warm_idle > 0 else headstart.HeadStart()
        from tasks import pipeline, present

        say = run.say(2 if json else 1, keep=False)  # progress: a replay builds nothing, so says none of it
        try:
            result = pipeline.build_run(s, Path(crate) if crate else None, log=say, on_line=say, release=not debug,
                                        features=features, extra_args=extra, fix_weak=fix_weak, early=early)
        finally:
            early.close()
        lf = pipeline.load_lock(s)
        if result.plan is not None:
            headstart.save(plan_run, pipeline.plan_watch(s, lf, result), early, result.plan)
            result = dataclasses.replace(result, plan=None)  # the next build's, not this build's answer
    out_line = run.say(1)
    if json:  # with "ok" and the violation in "error" before the one-line error and exit 10
        out_line(present.build_json(result, lf, s.backend))
        noted = False
    else:
        noted = pipeline.retain_note_due(s, result.audits)  # said once per cache: not to be replayed
        out_line(present.audit_text(result.audits, retain_note=noted))
        for p in result.libraries:
            out_line(str(p))
    pipeline.raise_on_violation(result.audits)
    run.save(None if noted else pipeline.build_watch(s, lf, result), result)
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
    with json_document_on_failure(json, "matrix" if matrix else "smoke"):
        s = settings(c, lock, target=target)
        run = memo.Run(s.cache, "smoke", {"settings": _key(s), "lib": [str(Path(p).resolve()) for p in lib or []],
                                          "symbol": symbol, "current": current, "json": json, "host_mode": host_mode,
                                          "host_lib": host_lib, "host_symbols": host_symbols})
        replayable = not (matrix or sysroot or host)  # a host program or a sysroot: their files are not watched
        if replayable and (hit := memo.replay(run, value=value_is_used())) is not None:  # same libraries, verdicts
            return memo.play(hit)  # type: ignore[no-any-return]
        from tasks import pipeline, present

        say = run.say(2 if json else 1)
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
        run.say(1)(present.smoke_json(lf, results, str(failure) if failure else None))
    elif text := present.smoke_text(results):
        run.say(1)(text)
    if failure:
        raise failure
    if replayable:
        run.save(pipeline.smoke_watch(s, lf, results, host_symbols=host_symbols, named=bool(lib)), results)
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


def _key(s: Settings) -> dict[str, object]:
    """What of the settings a run's result depends on, for its memo: all but how long a warm
    container waits (and how downloads go, which change no result)."""
    skip = {"warm_idle", "jobs", "progress", "deadline"}
    return {"cwd": os.getcwd(), **{f.name: getattr(s, f.name) for f in dataclasses.fields(s) if f.name not in skip}}


def _split(args: str) -> tuple[str, ...]:
    try:
        return tuple(shlex.split(args))
    except ValueError as exc:
        raise ConfigError(f"--cargo-args {args!r}: {exc}") from None



TASKS = [build_, audit_, smoke_, sysroot_]
