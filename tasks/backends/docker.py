"""Build a crate's cdylibs in the builder image, as the calling user, and copy them out.

    crate ──► inspect ──► cargo fetch in the image (network; skipped when unchanged)
          ──► cargo build --offline in the image (no network) ──► <out>/<target>/lib*.so

``build_crate`` is given the builder image's tag (:func:`tasks.pipeline.build` makes it);
it never builds images. Everything is keyed by the lockfile's target, so one checkout
builds for several targets without collisions:

- the target dir is ``<cache>/targets/<target>/<crate>-<hash of its path>`` (incremental);
- the outputs go to ``<out>/<target>/`` with that target's ``last-build.json``.

Mounts: the crate's workspace read-write (cargo may write Cargo.lock) and every path
package outside it read-only (:mod:`tasks.backends.sources`), each at its *own absolute
path*, so cargo's relative ``path = "../common"`` stays valid; ``<cache>/cargo-home`` at
/cargo and the target dir at /target. Registry dependencies are fetched by the image's own
cargo (:mod:`tasks.backends.fetch`). cargo's human output (stderr) streams live; its JSON
messages (stdout) name the artifacts. On a local daemon cargo runs by ``docker exec`` in a
warm container kept per (image, mounts, user) for ``compatbuild.warm_idle`` seconds
(:meth:`tasks.builder.docker_client.Docker.run_warm`; ``--no-warm``: a new container each
time), which saves the container's start (0.65 s against 0.12 s here); a warm build's
plan lets the next one start cargo before the pipeline has worked it out again
(:mod:`tasks.backends.headstart`). When none of the build container's inputs changed
since the last build and its copies are intact (:mod:`tasks.backends.uptodate`), no
container runs and nothing is said.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from pathlib import Path, PurePosixPath

from tasks.backends import cross, uptodate
from tasks.backends.crate import ADD_CDYLIB, CrateInfo, inspect_crate
from tasks.backends.fetch import cargo_error, ensure_fetched
from tasks.backends.headstart import Plan
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
from tasks.backends.sources import Sources, find_sources
from tasks.builder.docker_client import Docker
from tasks.builder.engine import Started
from tasks.builder.transport import Bind, Mount, Warm, binds, for_daemon
from tasks.errors import CargoError, CrateError
from tasks.inputs.lockfile import Lockfile
from tasks.settings import Settings
from tasks.store import digest_of

# Folders of the image that a crate mounted at its own path must not cover.
RESERVED = ("/bin", "/cargo", "/dev", "/etc", "/lib", "/lib64", "/proc", "/sbin", "/sys",
            "/target", "/usr")
Log = Callable[[str], None]


def build_crate(dk: Docker, lock: Lockfile, settings: Settings, crate: Path, opts: BuildOptions, *,
                image: str, log: Log = print, on_line: Log = print, early: Started | None = None) -> BuildResult:
    """Build ``crate``'s cdylibs in the builder ``image`` (a tag; it must exist).

    The libraries are copied into ``<out>/<target name>/`` and recorded there in
    last-build.json (:func:`tasks.backends.outputs.finish`, which also runs the weak-version
    fix-up when ``opts.fix_weak``). A warm build's result carries its plan, for the next
    build's head start; ``early`` is this build's, taken if it is the exec this build runs
    (:mod:`tasks.backends.headstart`). Raises CrateError (not a cdylib crate, unusable path),
    CargoError (fetch or build failed), OutputError, FixupError.
    """
    started = time.monotonic()
    info = inspect_crate(crate)
    sources = find_sources(info)
    home, target = cargo_home(settings), target_dir(settings, lock, info)
    for d in (home, target):
        d.mkdir(parents=True, exist_ok=True)
    mounts = _mounts(sources, home, target, lock.target.name)
    workdir, user = str(info.root), f"{os.getuid()}:{os.getgid()}"
    tp = for_daemon(dk, settings.remote)  # bind mounts, or archives for a remote daemon
    ensure_fetched(tp, image, info.name, sources, home, mounts=mounts, workdir=workdir,
                   user=user, on_line=on_line)

    cmd = ["cargo", "build", "--offline", *cross.cargo_target(lock), *cargo_flags(info, opts)]
    env = {"CARGO_TERM_COLOR": "never", **cross.environment(lock)}
    outputs_root = opts.out_root(settings)  # every target's copies
    out_dir = output_dir(outputs_root, lock)
    check = uptodate.Check(image, tuple(cmd), sources.mounts(), out_dir, (outputs_root, settings.cache), target,
                           opts.fix_weak)
    inputs, files = uptodate.material(check)
    stamped = uptodate.fresh_outputs(target, inputs)  # nothing changed: no container at all
    fresh = stamped is None
    touched = not fresh and files != uptodate.known_files(target)  # same bytes, new stat: keep the new table
    slot = digest_of({"workspace": str(info.root), "target": lock.target.name})
    warm = Warm(slot, settings.warm_idle) if settings.warm_idle > 0 else None
    if stamped is None:
        libraries = _cargo_build(tp, image, info, cmd, target, out_dir, log=log, on_line=on_line,
                                 mounts=mounts, workdir=workdir, user=user, env=env, lock=lock,
                                 warm=warm, early=early)
        fixups = None  # fresh copies: the fix-up edits them
    else:
        libraries, fixups = stamped  # the stamped build's copies, and what its fix-up did to them
    result = finish(libraries, info, lock, out_dir, opts, image=image, started=started, fixups=fixups)
    if fresh or touched:
        uptodate.record(target, inputs, libraries, files, result.fixups)  # the stamp holds the fixed-up bytes
    if fresh:
        for p in libraries:
            log(f"Built {p}")
    plan = None if warm is None or tp.remote else Plan(check, image, tuple(cmd), binds(mounts), user, workdir, env)
    return dataclasses.replace(result, plan=plan)


def _cargo_build(tp: Bind, image: str, info: CrateInfo, cmd: list[str], target: Path, out_dir: Path,
                 *, log: Log, on_line: Log, mounts: list[Mount], workdir: str, user: str, env: dict[str, str],
                 lock: Lockfile, warm: Warm | None, early: Started | None) -> tuple[Path, ...]:
    """Run cargo in the build container (no network); copy the cdylibs it names into ``out_dir``.

    With ``warm`` (a local daemon), by ``docker exec`` in the container kept for this crate
    workspace and target; else in a new container. On a remote daemon the cdylibs come back
    from its target volume into ``target`` first.
    """
    how = f", cross-linked for {lock.target.arch}" if lock.target.cross_from else ""
    log(f"Building {info.name} in {image} (glibc {lock.target.glibc}{how})")

    def outputs(stdout: str) -> list[tuple[str, Path]]:
        return [("/target/" + p.relative_to(target).as_posix(), p) for p in _cdylibs(stdout, target)]

    preload()
    status, stdout, stderr = tp.run_split(
        image, cmd, mounts, bring_back=outputs, on_stderr=on_line, user=user, working_dir=workdir,
        environment=env, network_disabled=True, warm=warm, early=early,
    )
    if status != 0:
        raise cross.cross_error(info.name, lock, stderr) or CargoError(
            f"cargo build of {info.name} failed: {cargo_error(stderr, status)}")
    built = _cdylibs(stdout, target)
    if not built:
        raise CrateError(f"cargo built no cdylib for {info.name}; {ADD_CDYLIB}")
    return tuple(copy_out(p, out_dir) for p in built)




def _mounts(sources: Sources, home: Path, target: Path, target_name: str) -> list[Mount]:
    """Each source folder at its own path (workspace rw, the rest ro), cargo home and target dir."""
    mounts: list[Mount] = []
    for i, folder in enumerate(sources.mounts()):
        posix = PurePosixPath(folder.as_posix())
        clash = [r for r in RESERVED if posix == PurePosixPath(r) or posix.is_relative_to(r)]
        if posix == PurePosixPath("/") or clash:
            raise CrateError(f"{folder}: a crate there would cover the image's own "
                             f"{clash[0] if clash else '/'}; move it elsewhere to build it")
        mounts.append(Mount(folder, str(folder), writable=i == 0))
    mounts.append(Mount(home, "/cargo", writable=True, cache="cargo-home"))
    mounts.append(Mount(target, "/target", writable=True, cache=f"target-{target_name}-{target.name}"))
    return mounts




def _cdylibs(stdout: str, target: Path) -> list[Path]:
    """Host paths of the cdylibs cargo built under the container's /target."""
    return [target / p.relative_to("/target") for p in cdylib_files(stdout) if p.is_relative_to("/target")]

