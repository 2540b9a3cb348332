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
from tasks.crates import matrix, transport, zigbuild, zigtools
from tasks.crates.audit import LibraryAudit, audit_paths
from tasks.crates.build import BuildResult, build_crate
from tasks.crates.fixup import FixupReport
from tasks.crates.floors import resolve_floors
from tasks.crates.smoke import SmokeResult, smoke_in_image
from tasks.errors import DockerError, LockfileError
from tasks.inputs import download, http, lockfile, rpmsig, verify
from tasks.inputs.lockfile import Key, Lockfile, Rpm
from tasks.settings import Settings
from tasks.store import Store

Log = Callable[[str], None]


def inputs_ready(lock: Lockfile, settings: Settings, names: Iterable[str], log: Log = print) -> None:
    """Download and verify the named artifacts (and the pinned RPMs when 'rpms' is named).

    One download pass and one verification pass over just those inputs — for RPMs, their
    signatures by the target's ``rpm_key`` (:mod:`tasks.inputs.rpmsig`); when all of them
    are cached and verified already, nothing is printed.
    """
    wanted = set(names)
    artifacts = tuple(a for a in lock.artifacts if a.name in wanted)
    key_names = {a.key for a in artifacts if a.key}
    rpm_pins = "rpms" in wanted and bool(lock.rpms)
    if rpm_pins:  # a target pinning RPMs must name the key that signs them: fail before fetching
        key_names.add(rpmsig.rpm_key(lock).name)
    subset = dataclasses.replace(
        lock,
        artifacts=artifacts,
        keys=tuple(k for k in lock.keys if k.name in key_names),
        rpms=lock.rpms if rpm_pins else (),
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
    if subset.rpms:  # each RPM's own signature, by the target's pinned rpm_key fingerprint
        rpmsig.check_rpms(subset, Store(settings.cache), log=log)


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

    The one step that writes pins (`invoke rpms --refresh`); no other step calls it. Every
    new pin is downloaded and its signature checked against the target's ``rpm_key``
    before the lockfile is written: an unsigned, wrongly signed or altered package is
    never pinned.
    """
    key = rpmsig.rpm_key(lock)
    base = stages.ensure_base(dk, lock, log)
    installed = rpms.installed_in_base(dk, base)
    packages = lock.target.packages or rpms.PACKAGES
    repos = lock.target.repos or rpms.ARCHIVE_REPOS
    rpms.refresh(lock.path, repos=repos, packages=tuple(packages) + rpms.SYSROOT_PACKAGES,
                 installed=installed, fetch_bytes=lambda url: http.get_bytes(settings.mirror(url)),
                 log=log, target=lock.target.name,
                 check=lambda pins: check_new_pins(lock, key, settings, pins, log=log))
    return lockfile.load(lock.path, lock.target.name, linker=lock.linker)


def check_new_pins(lock: Lockfile, key: Key, settings: Settings, pins: Sequence[Rpm], *,
                   log: Log = print) -> None:
    """Download ``pins`` and ``key`` and check each RPM's signature (before pins are written)."""
    subset = dataclasses.replace(lock, artifacts=(), keys=(key,), rpms=tuple(pins))
    fetched = download.fetch_all(subset, settings, log=log)
    if any(f.action != "cached" for f in fetched):
        log(download.summary(fetched))
    rpmsig.check_rpms(subset, Store(settings.cache), log=log)


def build(dk: Docker | None, lock: Lockfile, settings: Settings, crate: Path, *, release: bool = True,
          features: str = "", extra_args: Sequence[str] = (), out: Path | None = None,
          fix_weak: bool = True, log: Log = print, on_line: Log = print) -> BuildResult:
    """``crate``'s cdylibs built for the target into ``<out>/<target name>/``, by ``settings.backend``.

    docker (``dk`` required): the builder image, then cargo in it. zig (``dk`` unused): the
    pinned cargo-zigbuild and zig wheels downloaded, verified and unpacked into the cache,
    then the host's cargo with them (:mod:`tasks.crates.zigbuild`). ``out`` defaults to
    ``settings.out``; cargo's output goes to ``on_line``, progress to ``log``; ``fix_weak``
    runs the weak-version fix-up on each library (on by default). See
    :func:`tasks.crates.build.build_crate` for what it raises.
    """
    if settings.backend == "zig":
        inputs_ready(lock, settings, zigtools.ARTIFACTS, log)
        tools = zigtools.install(lock, Store(settings.cache), settings.cache, log=log)
        return zigbuild.build_crate(lock, settings, crate, tools, release=release, features=features,
                                    extra_args=extra_args, out=out, fix_weak=fix_weak, log=log,
                                    on_line=on_line)
    if dk is None:
        raise DockerError("the docker backend needs the Docker daemon; `--backend zig` builds without it")
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
          on_line: Log | None = print, strict: bool = True) -> list[SmokeResult]:
    """The smoke image, then each library dlopen'ed in it (RTLD_NOW) as nobody, offline.

    A passing verdict is cached by (library sha256, smoke image id, harness arguments).
    Raises SmokeError carrying the loader's own text when a library does not load
    (``strict=False``: returns the failed results instead).
    """
    tag = image(dk, lock, settings, "smoke", log=log, on_line=on_line or (lambda _: None))
    return smoke_in_image(dk, lock, libraries, image=tag, cache=settings.cache, symbol=symbol,
                          optional_symbol=optional_symbol, log=log, on_line=on_line, strict=strict,
                          transport=transport.for_daemon(dk, settings.remote))


def smoke_matrix(dk: Docker | None, lock: Lockfile, settings: Settings, libraries: Sequence[Path], *,
                 symbol: str | None = None, optional_symbol: str | None = "test",
                 log: Log = print) -> list[matrix.Cell]:
    """Each library dlopen'ed on every glibc within reach: a :mod:`tasks.crates.matrix` table.

    Sysroots from the lockfile's pinned ``deb.<suite>.*`` packages and from each target's
    pinned glibc RPMs (a target without them: "not pinned"), the target's smoke image when
    ``dk`` is given ("no Docker" otherwise), and this machine. Never raises for a library
    that does not load: :func:`tasks.crates.matrix.failed` tells.
    """
    def in_image(libs: list[Path], dk: Docker) -> list[SmokeResult]:
        return smoke(dk, lock, settings, libs, log=log, on_line=None, strict=False, symbol=symbol,
                     optional_symbol=optional_symbol)

    places = matrix.places(
        lock, settings.cache, symbol=symbol, optional_symbol=optional_symbol, log=log,
        inputs=lambda lf, names: inputs_ready(lf, settings, names, log),
        in_image=(lambda libs: in_image(libs, dk)) if dk is not None else None,
    )
    return matrix.run(libraries, places)
