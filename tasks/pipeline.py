"""The one composer: inputs → image → build → audit → smoke, each step checked fast.

Every other step takes its inputs as arguments (an image tag, a lockfile object) and never
fetches them itself; this module is the one place that chains them, so it reads as the
whole run::

    tag = image(dk, lock, settings, "builder")          # inputs fetched + verified, stages built
    result = build(dk, lock, settings, Path("../mycrate"))   # image() + build_crate()
    audits = audit(result.libraries, lock)                   # ELF checks vs the target glibc
    smoke(dk, lock, settings, result.libraries)              # image("smoke") + smoke_in_image()

These functions, :func:`inputs_ready` and :func:`refresh_rpm_pins` are the stable API a
user's ``tasks.py`` may call. Idempotency lives here, not in invoke ``pre=``: each step
checks its cache and returns at once, saying nothing, when there is nothing to do. A run
never rewrites the lockfile: unpinned RPMs are an error naming `invoke rpms --refresh`,
the one explicit step that pins them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from tasks.builder import registry, rpms, stages
from tasks.builder.docker_client import Docker
from tasks.crates import transport
from tasks.crates.audit import LibraryAudit, audit_paths
from tasks.crates.build import BuildResult, build_crate
from tasks.crates.fixup import FixupReport
from tasks.crates.floors import resolve_floors
from tasks.crates.smoke import SmokeResult, smoke_in_image
from tasks.errors import LockfileError
from tasks.inputs import download, http, lockfile, verify
from tasks.inputs.lockfile import Lockfile
from tasks.settings import Settings
from tasks.store import Store

Log = Callable[[str], None]


def inputs_ready(lock: Lockfile, settings: Settings, names: Iterable[str], log: Log = print) -> None:
    """Download and verify the named artifacts (and the pinned RPMs when 'rpms' is named).

    One download pass and one verification pass over just those inputs; when all of them
    are cached and verified already, nothing is printed.
    """
    wanted = set(names)
    artifacts = tuple(a for a in lock.artifacts if a.name in wanted)
    key_names = {a.key for a in artifacts if a.key}
    subset = dataclasses.replace(
        lock,
        artifacts=artifacts,
        keys=tuple(k for k in lock.keys if k.name in key_names),
        rpms=lock.rpms if "rpms" in wanted else (),
    )
    if not (subset.artifacts or subset.rpms):
        return
    fetched = download.fetch_all(subset, settings, log=log)
    if any(f.action != "cached" for f in fetched):
        log(download.summary(fetched))
    if subset.artifacts:
        verified = verify.verify_all(subset, Store(settings.cache), log=log)
        if any(v.action != "cached" for v in verified):
            log(verify.summary(verified))


def require_rpm_pins(lock: Lockfile) -> None:
    """LockfileError naming `invoke rpms --refresh` when the target lists packages none pin."""
    if lock.target.packages and not lock.rpms:
        raise LockfileError(
            f"{lock.path.name} pins no RPMs for {lock.target.name}'s packages yet; run "
            f"`invoke rpms --refresh --lock {lock.path}` (needs the internet and Docker) to pin them"
        )


def image(dk: Docker, lock: Lockfile, settings: Settings, upto: str, *, log: Log = print,
          on_line: Log = print, nocache: bool = False, push: str = "") -> str:
    """Every image stage up to ``upto`` ("builder", "smoke", "llvm", ...); returns its tag.

    When the tag exists nothing else is done (one lookup: the tag is a digest of every
    input of the chain). Otherwise the newest stage of the chain that exists, or that the
    registry (``settings.registry``) has and that passes its checks, is where building
    starts: then, in order, the base image is ensured once when the first stage must be
    built (a missing base fails before any download), RPM pins are required, the inputs of
    the stages still missing are fetched and verified, and each is built. ``nocache``
    builds missing stages without Docker's layer cache; ``push`` (a REGISTRY/REPO) pushes
    every stage of the chain afterwards.
    """
    require_rpm_pins(lock)
    plans = stages.plan(lock, Store(settings.cache), upto)
    stages_ready(dk, lock, settings, plans, log=log, on_line=on_line, nocache=nocache)
    if push:
        registry.push_stages(dk, registry.Registry.named(push, settings.cache), plans, log=log)
    return plans[-1].tag


def stages_ready(dk: Docker, lock: Lockfile, settings: Settings, plans: Sequence[stages.Plan], *,
                 log: Log = print, on_line: Log = print, nocache: bool = False) -> list[stages.Plan]:
    """Make every planned stage (a chain, parents first) exist; return the ones built here.

    The newest stage that exists, or that the registry has and that passes its checks
    (:func:`tasks.builder.registry.pull_stage`), is where building starts; only the stages
    after it fetch their inputs and build.
    """
    store = Store(settings.cache)
    reg = registry.Registry.named(settings.registry, settings.cache) if settings.registry else None
    have = -1  # the newest stage of the chain on this daemon
    for i in range(len(plans) - 1, -1, -1):
        if dk.image(plans[i].tag) is not None or (reg and registry.pull_stage(dk, reg, plans[i], log=log)):
            have = i
            break
    todo = list(plans[have + 1:])
    if todo:
        if have < 0:
            stages.ensure_base(dk, lock, log, registry=reg.repo if reg else "")
        needed: list[str] = []
        for p in todo:
            needed.extend(p.stage.artifacts)
            if p.stage.rpms:
                needed.append("rpms")
        inputs_ready(lock, settings, needed, log)
        stages.build_missing(dk, store, todo, log=log, on_line=on_line, nocache=nocache)
    return todo


def refresh_rpm_pins(dk: Docker, lock: Lockfile, settings: Settings, log: Log = print) -> Lockfile:
    """Resolve ``[target] packages`` from the archive and rewrite ``[[rpm]]``; the new lockfile.

    The one step that writes pins (`invoke rpms --refresh`); no other step calls it.
    """
    base = stages.ensure_base(dk, lock, log)
    installed = rpms.installed_in_base(dk, base)
    packages = lock.target.packages or rpms.PACKAGES
    repos = lock.target.repos or rpms.ARCHIVE_REPOS
    rpms.refresh(lock.path, repos=repos, packages=tuple(packages) + rpms.SYSROOT_PACKAGES,
                 installed=installed, fetch_bytes=lambda url: http.get_bytes(settings.mirror(url)),
                 log=log, target=lock.target.name)
    return lockfile.load(lock.path, lock.target.name, linker=lock.linker)


def build(dk: Docker, lock: Lockfile, settings: Settings, crate: Path, *, release: bool = True,
          features: str = "", extra_args: Sequence[str] = (), out: Path | None = None,
          fix_weak: bool = True, log: Log = print, on_line: Log = print) -> BuildResult:
    """The builder image, then ``crate``'s cdylibs built in it into ``<out>/<target name>/``.

    ``out`` defaults to ``settings.out``; cargo's output goes to ``on_line``, progress to
    ``log``; ``fix_weak`` runs the weak-version fix-up on each library (on by default).
    See :func:`tasks.crates.build.build_crate` for what it raises.
    """
    tag = image(dk, lock, settings, "builder", log=log, on_line=on_line)
    return build_crate(dk, lock, settings, crate, image=tag, release=release, features=features,
                       extra_args=extra_args, out=out, fix_weak=fix_weak, log=log, on_line=on_line)


def audit(libraries: Sequence[Path], lock: Lockfile, *,
          fixups: Sequence[FixupReport] = ()) -> list[LibraryAudit]:
    """Each library's ELF audited against the lockfile's target (no Docker).

    The target's floors (:func:`tasks.crates.floors.resolve_floors`): its glibc, and for a
    known target (fedora20, centos7, bullseye, bookworm) its libgcc_s, libstdc++ and libz
    versions. ``fixups`` (``BuildResult.fixups``) let the report say what the fix-up changed.
    """
    floors = resolve_floors(lock.target.name, lock.target.glibc)
    return audit_paths(libraries, floors=floors, fixups=fixups)


def smoke(dk: Docker, lock: Lockfile, settings: Settings, libraries: Sequence[Path], *,
          symbol: str | None = None, optional_symbol: str | None = "test", log: Log = print,
          on_line: Log | None = print) -> list[SmokeResult]:
    """The smoke image, then each library dlopen'ed in it (RTLD_NOW) as nobody, offline.

    A passing verdict is cached by (library sha256, smoke image id, harness arguments).
    Raises SmokeError carrying the loader's own text when a library does not load.
    """
    tag = image(dk, lock, settings, "smoke", log=log, on_line=on_line or (lambda _: None))
    return smoke_in_image(dk, lock, libraries, image=tag, cache=settings.cache, symbol=symbol,
                          optional_symbol=optional_symbol, log=log, on_line=on_line,
                          transport=transport.for_daemon(dk, settings.remote))
