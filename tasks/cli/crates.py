"""Tasks for crates: build, audit, smoke, sysroot."""

from __future__ import annotations

import dataclasses
import json
import platform
import shlex
from pathlib import Path

from invoke.context import Context
from invoke.tasks import task

from tasks import audit as audit_lib
from tasks import build as build_lib
from tasks import docker_client, lockfile
from tasks import smoke as smoke_lib
from tasks import sysroot as sysroot_lib
from tasks.cli.common import LOCK_HELP, reports_errors, settings
from tasks.errors import CompatError
from tasks.settings import PROJECT_ROOT
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
) -> None:
    """Build a crate's cdylibs in the glibc-2.18 builder image, copy them out, audit them."""
    s = settings(c, lock)
    if out:
        s = dataclasses.replace(s, out=Path(out).resolve())
    lf = lockfile.load(s.lock)
    log = _stderr if json else print
    result = build_lib.build_crate(
        docker_client.connect(), lf, Store(s.cache), s, Path(crate or EXAMPLE_CRATE),
        release=not debug, features=features, extra_args=_split(cargo_args),
        log=log, on_line=log,
    )
    audits = audit_lib.audit_paths(result.libraries, target_glibc=lf.target.glibc)
    if json:
        print(_json({"libraries": [str(p) for p in result.libraries],
                     "image": result.image_tag, "audit": _audit_dicts(audits)}))
    else:
        print(audit_lib.format_report(audits))
        for p in result.libraries:
            print(p)
    audit_lib.raise_on_violation(audits)


@task(
    auto_shortflags=False,
    name="audit",
    iterable=["path"],
    help={
        "path": "a library to audit (repeatable; default: the last build's libraries)",
        "glibc": "target glibc version (default: the lockfile's target)",
        "json": "print the report as JSON, for CI",
        "lock": LOCK_HELP,
    },
)
@reports_errors
def audit_(c: Context, path: list[str] | None = None, glibc: str = "", json: bool = False,
           lock: str = "") -> None:
    """Read each library's ELF: glibc versions needed, too-new symbols, DT_NEEDED, RPATH."""
    s = settings(c, lock)
    target = glibc or lockfile.load(s.lock).target.glibc
    paths = [Path(p) for p in path] if path else build_lib.last_build(s.out).libraries
    audits = audit_lib.audit_paths(paths, target_glibc=target)
    print(audit_lib.report_json(audits) if json else audit_lib.format_report(audits))
    audit_lib.raise_on_violation(audits)


@task(
    auto_shortflags=False,
    name="smoke",
    iterable=["lib"],
    help={
        "lib": "a library to load (repeatable; default: the last build, else build the example)",
        "symbol": "look up this symbol and call it (default: call `test` only if it exists)",
        "sysroot": "run under this folder's glibc via its own loader instead of Docker",
        "current": "also load on this machine's current glibc (default: yes)",
        "lock": LOCK_HELP,
    },
)
@reports_errors
def smoke_(c: Context, lib: list[str] | None = None, symbol: str = "", sysroot: str = "",
           current: bool = True, lock: str = "") -> None:
    """dlopen(RTLD_NOW) each library on the target's old glibc (and the current one)."""
    s = settings(c, lock)
    lf = lockfile.load(s.lock)
    store = Store(s.cache)
    if lib:
        libs = [Path(p).resolve() for p in lib]
    else:
        libs = _last_or_example(s, lf, store)
    sym = symbol or None
    if sysroot:
        print(f"Smoke-testing {len(libs)} librar{'y' if len(libs) == 1 else 'ies'} under the glibc of {sysroot}")
        smoke_lib.smoke_sysroot(libs, Path(sysroot), symbol=sym, cache=s.cache, on_line=print)
    else:
        smoke_lib.smoke_in_image(docker_client.connect(), lf, store, libs, symbol=sym, log=print, settings=s)
    if current:
        print(f"Smoke-testing on this machine's glibc {platform.libc_ver()[1] or '?'}")
        smoke_lib.smoke_native(libs, symbol=sym, cache=s.cache, on_line=print)


def _last_or_example(s: object, lf: lockfile.Lockfile, store: Store) -> list[Path]:
    from tasks.settings import Settings

    assert isinstance(s, Settings)
    try:
        return list(build_lib.last_build(s.out).libraries)
    except CompatError:
        pass
    print(f"Nothing built yet: building the bundled example {EXAMPLE_CRATE}")
    result = build_lib.build_crate(docker_client.connect(), lf, store, s, EXAMPLE_CRATE)
    audits = audit_lib.audit_paths(result.libraries, target_glibc=lf.target.glibc)
    print(audit_lib.format_report(audits))
    audit_lib.raise_on_violation(audits)
    return list(result.libraries)


@task(
    auto_shortflags=False,
    name="sysroot",
    help={"dest": "folder to create (default: <cache>/sysroot-<target>)", "lock": LOCK_HELP},
)
@reports_errors
def sysroot_(c: Context, dest: str = "", lock: str = "") -> None:
    """Unpack the pinned glibc RPMs into a sysroot, for `invoke smoke --sysroot` without Docker."""
    s = settings(c, lock)
    lf = lockfile.load(s.lock)
    where = Path(dest).resolve() if dest else s.cache / f"sysroot-{lf.target.name}"
    print(sysroot_lib.make_sysroot(lf, Store(s.cache), where))


def _split(args: str) -> list[str]:
    try:
        return shlex.split(args)
    except ValueError as exc:
        raise CompatError(f"--cargo-args {args!r}: {exc}") from None


def _audit_dicts(audits: list[audit_lib.LibraryAudit]) -> list[dict[str, object]]:
    return [a.to_dict() for a in audits]


def _json(obj: object) -> str:
    return json.dumps(obj, indent=2)


def _stderr(line: str) -> None:
    import sys

    print(line, file=sys.stderr)


TASKS = [build_, audit_, smoke_, sysroot_]
