"""The zig backend: build a crate's cdylibs with the host's cargo and cargo-zigbuild, no Docker.

    crate ──► cargo-zigbuild build --target <arch>-unknown-linux-gnu.<target glibc>
          ──► <out>/<target>/lib*.so (+ last-build.json), fixed up like the image's builds

The triple is the target's arch's (:mod:`tasks.arches`): ``x86_64-unknown-linux-gnu`` or, for
an ``arch = "aarch64"`` target, ``aarch64-unknown-linux-gnu``, cross-compiled from this x86_64
machine with no Docker and no other toolchain. cargo-zigbuild and zig come from the pinned
wheels (:mod:`tasks.backends.zigtools`); rustc and cargo are the host's (a rustup toolchain
with the triple's std: ``rustup target add aarch64-unknown-linux-gnu``). zig
links against stub libraries generated for the target glibc, and the ``cc`` crate's C code
is compiled by ``zig cc`` for that glibc too, so no symbol newer than the target can leak
from the host; build scripts see no pkg-config database (``PKG_CONFIG_LIBDIR`` is an empty
folder), so none can hand the link this machine's libraries (a crate's own variables, such as
``SQLITE3_LIB_DIR``, still reach its build script). Everything zig and cargo-zigbuild cache
goes under ``<cache>/zig``; the registry under ``<cache>/cargo-home``; the target dir is
``<cache>/targets/<target>/<crate>-<hash>-zig`` (incremental: a rebuild after touching one
file is cargo's own). Same outputs, same record and same fix-up as the image builds, so the
audit and smoke steps cannot tell the backends apart, except by the record's ``backend``.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from tasks import arches
from tasks.atomic import write_atomic
from tasks.backends.crate import ADD_CDYLIB, CrateInfo, inspect_crate
from tasks.backends.fetch import cargo_error
from tasks.backends.headstart import HeadStart, ProcessPlan
from tasks.backends.outputs import (
    BuildOptions,
    BuildResult,
    cargo_flags,
    cargo_home,
    cdylib_files,
    copy_out,
    finish,
    output_dir,
    preload,
    target_dir,
)
from tasks.backends.zigtools import ZigTools
from tasks.errors import CargoError, CrateError, RustStdError, ToolError
from tasks.inputs.lockfile import Lockfile
from tasks.proc import last_line, start
from tasks.proc import run as proc_run
from tasks.settings import Settings
from tasks.store import digest_of

TRIPLE = arches.X86_64.rust_triple  # the default target's; a target's own is arches.get(arch).rust_triple
_HOST_PKG_CONFIG = ("PKG_CONFIG_PATH_", "PKG_CONFIG_LIBDIR_", "PKG_CONFIG_SYSROOT_DIR_", "HOST_PKG_CONFIG",
                    "TARGET_PKG_CONFIG")  # the pkg-config crate's per-target variants
BUILD_DEADLINE = 4 * 3600.0  # seconds one cargo-zigbuild run may take (then it is killed)
# The cargo cargo-zigbuild runs ($CARGO; it takes CARGO out of cargo's own environment): record the
# arguments and environment cargo gets, for the next build's head start to run that cargo itself
# (tasks/backends/headstart.py), then be the real one (the user's $CARGO, else cargo on PATH).
CARGO_SHIM = """#!/bin/sh
# compatbuild: the cargo cargo-zigbuild runs (tasks/backends/zig.py)
record=$COMPATBUILD_CARGO_RECORD cargo=${COMPATBUILD_CARGO:-cargo} for=$COMPATBUILD_CARGO_FOR
unset COMPATBUILD_CARGO_RECORD COMPATBUILD_CARGO COMPATBUILD_CARGO_FOR
[ -z "$record" ] || (umask 077 && { printf '%s\\n%s\\n' "$for" "$#" && printf '%s\\0' "$@" && env -0; } \\
    > "$record.$$" && mv -f "$record.$$" "$record") 2>/dev/null
exec "$cargo" "$@"
"""
# The record (mode 0600, in the zig target dir): which run it is of (COMPATBUILD_CARGO_FOR, a digest of
# cargo-zigbuild's arguments, folder and environment), cargo's arguments and environment. Removed once
# read; the plan keeps only what differs from this process's environment (headstart.ProcessPlan.of).
RECORD = ".compatbuild-cargo"
Log = Callable[[str], None]


def zig_env(settings: Settings, tools: ZigTools) -> dict[str, str]:
    """The environment cargo-zigbuild runs in: the pinned zig, every cache under compatbuild's."""
    zig_cache = settings.cache / "zig" / "cache"
    no_pc = settings.cache / "zig" / "no-pkg-config"  # an empty folder: pkg-config finds nothing
    no_pc.mkdir(parents=True, exist_ok=True)
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith(_HOST_PKG_CONFIG)},
        # build scripts run here, on the host: its pkg-config would hand them this machine's
        # libraries (libsqlite3-sys asked for -lsqlite3, which zig cannot link for the target)
        "PKG_CONFIG_LIBDIR": str(no_pc),
        "PKG_CONFIG_PATH": "",
        "PKG_CONFIG_SYSROOT_DIR": str(no_pc),
        "CARGO_ZIGBUILD_ZIG_PATH": str(tools.zig),
        # cargo-zigbuild tries `python3 -m ziglang` before CARGO_ZIGBUILD_ZIG_PATH: a user's
        # own ziglang would win over the pin (and pyenv shims cost ~1.5 s). Not executable:
        "CARGO_ZIGBUILD_PYTHON_PATH": os.devnull,
        "CARGO_ZIGBUILD_CACHE_DIR": str(zig_cache / "cargo-zigbuild"),
        "ZIG_GLOBAL_CACHE_DIR": str(zig_cache / "global"),
        "ZIG_LOCAL_CACHE_DIR": str(zig_cache / "local"),
        "CARGO_HOME": str(cargo_home(settings)),
        "CARGO_TERM_COLOR": "never",
    }


def rust_sysroot(env: Mapping[str, str], cwd: Path | None = None) -> Path:
    """The sysroot of the rustc cargo will use (``$RUSTC`` or ``rustc``) when run in ``cwd``.

    ``cwd`` should be the crate's folder, where cargo-zigbuild runs: rustup picks the toolchain
    by the ``rust-toolchain`` files above the current folder.
    """
    rustc = env.get("RUSTC") or "rustc"
    proc = proc_run([rustc, "--print", "sysroot"], what="the zig backend uses the host's Rust toolchain "
                    "(install it with rustup)", timeout=60, env=env, cwd=cwd)
    if proc.returncode != 0:
        raise ToolError(f"{rustc} --print sysroot failed: {last_line(proc.stderr)}")
    return Path(proc.stdout.strip())


def rustc_release(env: Mapping[str, str], cwd: Path | None = None) -> str | None:
    """The ``release:`` of ``rustc -vV`` (``$RUSTC`` or ``rustc``, run in ``cwd``); None if it says none.

    It is what cargo-zigbuild asks the same rustc (the rustc_version crate: ``$RUSTC -vV``)
    and hands on as ``CARGO_ZIGBUILD_RUSTC_VERSION``; given that up front, its own two
    ``zig cc -E`` probes (bindgen's include paths) skip one ``rustc -vV`` each (~40 ms).
    """
    rustc = env.get("RUSTC") or "rustc"
    try:
        proc = proc_run([rustc, "-vV"], what=f"{rustc} -vV", timeout=60, env=env, cwd=cwd)
    except ToolError:
        return None  # cargo-zigbuild asks again, and says what is wrong
    if proc.returncode != 0:
        return None
    for line in proc.stdout.splitlines():
        key, _, value = line.partition(":")
        if key == "release" and value.strip():
            return value.strip()
    return None


def check_rust_std(env: Mapping[str, str], triple: str = TRIPLE, cwd: Path | None = None) -> Path:
    """RustStdError unless the host toolchain (as chosen in ``cwd``) has a std for ``triple``; its rustlib folder."""
    sysroot = rust_sysroot(env, cwd)
    lib = sysroot / "lib" / "rustlib" / triple / "lib"
    if not any(lib.glob("libstd-*.rlib")):
        raise RustStdError(f"no Rust std for {triple} in the toolchain at {sysroot}; "
                           f"run `rustup target add {triple}`")
    return lib


def build_crate(lock: Lockfile, settings: Settings, crate: Path, opts: BuildOptions, *, tools: ZigTools,
                log: Log = print, on_line: Log = print, early: HeadStart | None = None) -> BuildResult:
    """Build ``crate``'s cdylibs with cargo-zigbuild for the lockfile target's glibc.

    The result carries the plan of the cargo-zigbuild run and of the cargo it ran, for the next
    build's head start; ``early`` is this build's (:mod:`tasks.backends.headstart`): its run is
    taken when it is what the cargo-zigbuild run this build arrives at (same arguments, folder
    and environment) starts first, else stopped first.

    Raises ZigTargetError (a glibc the pinned zig cannot target), RustStdError (no std for
    the triple), CrateError, CargoError (cargo failed), OutputError, FixupError.
    """
    started = time.monotonic()
    glibc = lock.target.glibc
    tools.check_glibc(glibc)
    env = zig_env(settings, tools)
    triple = arches.get(lock.target.arch).rust_triple
    info = inspect_crate(crate)
    # rustc -vV alongside rustc --print sysroot: two rustup proxy runs in the time of one
    release: list[str | None] = []
    asking = threading.Thread(target=lambda: release.append(rustc_release(env, info.root)), daemon=True)
    asking.start()
    try:
        std = check_rust_std(env, triple, info.root)
    finally:
        asking.join()
    if release and release[0]:
        env["CARGO_ZIGBUILD_RUSTC_VERSION"] = release[0]
    tdir = zig_target_dir(settings, lock, info)
    for d in (tdir, cargo_home(settings)):
        d.mkdir(parents=True, exist_ok=True)
    cmd = [str(tools.cargo_zigbuild), "zigbuild", "--target", f"{triple}.{glibc}", "--target-dir", str(tdir),
           *cargo_flags(info, opts)]
    log(f"Building {info.name} with zig for {triple} glibc {glibc} ({tools.versions})")
    what = f"building {info.name} with zig"
    env.update(CARGO=str(cargo_shim(settings)), COMPATBUILD_CARGO=os.environ.get("CARGO") or "cargo",
               COMPATBUILD_CARGO_RECORD=str(tdir / RECORD))
    run_id = digest_of({"argv": cmd, "cwd": str(info.root), "env": env})  # which run a record is of
    env["COMPATBUILD_CARGO_FOR"] = run_id
    preload()
    taken = early.process(cmd, info.root, env) if early is not None else None
    status, stdout, stderr = (taken or start(cmd, what=what, timeout=BUILD_DEADLINE, cwd=info.root, env=env)).finish(
        on_line)
    planned = early.plan if taken is not None and early is not None else None  # the plan of the run taken
    if isinstance(planned, ProcessPlan) and planned.cargo:
        cargo: ProcessPlan | None = planned.cargo  # that cargo itself ran: the same one again
    else:  # the cargo this cargo-zigbuild run ran
        cargo = _recorded_cargo(tdir / RECORD, run_id, env["COMPATBUILD_CARGO"], info.root, what)
    plan = ProcessPlan.of(cmd, info.root, env, timeout=BUILD_DEADLINE, what=what, cargo=cargo)
    if status != 0:
        raise CargoError(f"cargo-zigbuild build of {info.name} failed: {cargo_error(stderr, status)}")
    built = [Path(p) for p in cdylib_files(stdout)]
    if not built:
        raise CrateError(f"cargo built no cdylib for {info.name}; {ADD_CDYLIB}")
    out_dir = output_dir(opts.out_root(settings), lock)
    libraries = [copy_out(p, out_dir) for p in built]
    result = finish(libraries, info, lock, out_dir, opts, image=f"zig ({tools.versions})", started=started,
                    backend="zig")
    for p in libraries:
        log(f"Built {p}")
    sysroot = std.parents[3]  # <sysroot>/lib/rustlib/<triple>/lib
    return dataclasses.replace(result, toolchain=(tools.zig, tools.cargo_zigbuild, sysroot / "bin" / "rustc",
                                                  sysroot / "bin" / "cargo", std),
                               plan=plan)


def cargo_shim(settings: Settings) -> Path:
    """compatbuild's ``$CARGO`` for cargo-zigbuild (:data:`CARGO_SHIM`), written once into the cache."""
    shim = settings.cache / "zig" / "cargo-shim.sh"
    try:
        if shim.read_text() == CARGO_SHIM:
            return shim
    except OSError:
        pass
    shim.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(shim, CARGO_SHIM.encode(), mode=0o755)
    return shim


def _recorded_cargo(record: Path, run_id: str, cargo: str, cwd: Path, what: str) -> ProcessPlan | None:
    """The ``cargo`` that the cargo-zigbuild run ``run_id`` ran (its arguments and environment, as
    :data:`CARGO_SHIM` recorded them), to start in cargo-zigbuild's place; None when the record
    is another run's, or none, or it does not read as one."""
    try:
        data = record.read_bytes()
        record.unlink()  # it holds every variable's value: kept no longer than it takes to read it
        of, count, rest = data.decode().split("\n", 2)
        fields = rest.split("\0")
        args, entries = fields[:int(count)], [f for f in fields[int(count):] if f]
    except (OSError, ValueError):
        return None
    env = dict(e.split("=", 1) for e in entries if "=" in e)
    if of != run_id or len(args) != int(count) or not env.get("PATH"):
        return None
    env.pop("_", None)  # the shell's last command, as sh saw it: not cargo's business
    return ProcessPlan.of([cargo, *args], cwd, env, timeout=BUILD_DEADLINE, what=what)


def zig_target_dir(settings: Settings, lock: Lockfile, info: CrateInfo) -> Path:
    """The zig builds' own target dir of a crate: the image builds' name with ``-zig``."""
    tdir = target_dir(settings, lock, info)
    return tdir.with_name(f"{tdir.name}-zig")


def build_script_reads(tdir: Path) -> tuple[list[Path], list[str]]:
    """What the build scripts of the last build in ``tdir`` said they read: the absolute paths of
    their ``rerun-if-changed`` lines and the names of their ``rerun-if-env-changed`` lines
    (cargo keeps each script's output in ``<profile>/build/<pkg>-<hash>/output``)."""
    paths: list[Path] = []
    names: list[str] = []
    for output in sorted([*tdir.glob("*/build/*/output"), *tdir.glob("*/*/build/*/output")]):
        try:
            lines = output.read_text(errors="replace").splitlines()
        except OSError:
            continue
        for line in lines:
            key, _, value = line.replace("cargo::", "cargo:", 1).partition("=")
            if key == "cargo:rerun-if-changed" and Path(value).is_absolute():
                paths.append(Path(value))
            elif key == "cargo:rerun-if-env-changed" and value:
                names.append(value)
    return paths, sorted(set(names))
