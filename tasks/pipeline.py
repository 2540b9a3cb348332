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
import os
import platform
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from tasks import memo
from tasks.atomic import write_atomic
from tasks.backends import docker as docker_backend
from tasks.backends import fetch, uptodate, zigtools
from tasks.backends import zig as zig_backend
from tasks.backends.headstart import HeadStart, ProcessPlan
from tasks.backends.outputs import (
    MARKER,
    RECORD,
    BuildOptions,
    BuildResult,
    cargo_home,
    last_build,
    output_dir,
    target_dir,
)
from tasks.backends.sources import find_sources
from tasks.builder import docker_client, registry, stages, transport
from tasks.builder.docker_client import Docker
from tasks.dlopen import matrix
from tasks.dlopen.hostmode import HostMode
from tasks.dlopen.smoke import SmokeResult, check, smoke_in_image, smoke_native, smoke_sysroot
from tasks.dlopen.sysroot import make_sysroot
from tasks.elf.audit import LibraryAudit, audit_paths, distinct_paths
from tasks.elf.fixup import FixupReport, fix_weak_needs
from tasks.elf.floors import resolve_floors
from tasks.elf.report import raise_on_violation as raise_on_violation  # the tasks' verdict on an audit
from tasks.errors import OFFLINE_HINT, CompatError, DockerError, LockfileError, SmokeError
from tasks.inputs import download, http, lockfile, pins, rpmpins, rpmsig, verify
from tasks.inputs.lockfile import Key, Lockfile, Rpm
from tasks.settings import PROJECT_ROOT, Settings
from tasks.store import Store, digest_of

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
            f"`invoke rpms --refresh --lock {lock.path}` (needs the internet and Docker) to pin them; "
            f"{OFFLINE_HINT}"
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
    if lock.target.cross_from and upto == "builder":  # its x86_64 build host's chain first, with its own pins
        image(dk, stages.host_lock(lock), settings, "builder", log=log, on_line=on_line, nocache=nocache)
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
    installed = rpmpins.installed_in_base(dk, base)
    packages = lock.target.packages or rpmpins.PACKAGES
    repos = lock.target.repos or rpmpins.ARCHIVE_REPOS
    rpmpins.refresh(lock.path, repos=repos, packages=tuple(packages) + rpmpins.SYSROOT_PACKAGES,
                 installed=installed, fetch_bytes=lambda url: http.get_bytes(settings.mirror(url)),
                 log=log, target=lock.target.name, arches=(lock.target.arch, "noarch"),
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
          fix_weak: bool = True, log: Log = print, on_line: Log = print,
          early: HeadStart | None = None) -> BuildResult:
    """``crate``'s cdylibs built for the target into ``<out>/<target name>/`` and audited.

    By ``settings.backend``: docker (``dk`` required): the builder image, then cargo in it
    (:mod:`tasks.backends.docker`). zig (``dk`` unused): the pinned cargo-zigbuild and zig
    wheels downloaded, verified and unpacked into the cache, then the host's cargo with them
    (:mod:`tasks.backends.zig`). ``out`` defaults to ``settings.out``; cargo's output goes to
    ``on_line``, progress to ``log``; ``fix_weak`` runs the weak-version fix-up on each
    library. The result carries each library's audit (:func:`audit`); nothing is raised for
    a violation here, :func:`tasks.elf.report.raise_on_violation` does that. ``early``: this
    build's head start (:mod:`tasks.backends.headstart`), for the backend to take.
    """
    opts = BuildOptions(release=release, features=features, extra_args=tuple(extra_args), out=out,
                        fix_weak=fix_weak)
    if settings.backend == "zig":
        inputs_ready(lock, settings, zigtools.ARTIFACTS, log)
        tools = zigtools.install(lock, Store(settings.cache), settings.cache, log=log)
        result = zig_backend.build_crate(lock, settings, crate, opts, tools=tools, log=log, on_line=on_line,
                                         early=early)
    else:
        if dk is None:
            raise DockerError("the docker backend needs the Docker daemon; `--backend zig` builds without it")
        tag = image(dk, lock, settings, "builder", log=log, on_line=on_line)
        result = docker_backend.build_crate(dk, lock, settings, crate, opts, image=tag, log=log, on_line=on_line,
                                            early=early.exec() if early else None)
    return dataclasses.replace(result, audits=tuple(audit(result.libraries, lock, fixups=result.fixups)))


# What a docker build's result depends on beyond its files: the daemon it asks.
DOCKER_ENV = ("DOCKER_HOST", "DOCKER_CONTEXT", "DOCKER_CONFIG", "DOCKER_CERT_PATH", "DOCKER_TLS_VERIFY")
# ... and a zig build's: what cargo, rustc, rustup, the cc crate and build scripts read from the
# environment (a name ending in * stands for every variable it begins), on this machine.
ZIG_ENV = ("PATH", "HOME", "RUSTUP_HOME", "RUSTUP_TOOLCHAIN", "RUSTC", "RUSTC_WRAPPER", "RUSTC_WORKSPACE_WRAPPER",
           "RUSTFLAGS", "RUSTDOCFLAGS", "CARGO_*", "RUST*", "CC*", "CXX*", "CFLAGS*", "CXXFLAGS*", "LDFLAGS*",
           "AR*", "TARGET_*", "HOST_*", "ZIG*", "PKG_CONFIG*", "SDKROOT", "MACOSX_DEPLOYMENT_TARGET")


def build_watch(settings: Settings, lock: Lockfile, result: BuildResult) -> memo.Watch:
    """What a build's result depends on, for its memo (:mod:`tasks.memo`): the lockfile, every
    file and folder of the crate's sources (as :mod:`tasks.backends.uptodate` lists them), the
    libraries and records it wrote; for docker the builder image; for zig what :func:`_zig_grounds` says."""
    info = result.crate
    sources = find_sources(info)
    inputs = [lock.path, *uptodate.source_paths(sources.mounts(), exclude=(settings.cache, result.out_dir.parent))]
    outputs = [*result.libraries, result.out_dir / RECORD, result.out_dir / MARKER, result.out_dir.parent / MARKER]
    if settings.backend != "zig":
        outputs.append(target_dir(settings, lock, info) / uptodate.STAMP)
        return memo.Watch(tuple(inputs), tuple(outputs), DOCKER_ENV, (result.image_tag,))
    files, names = _zig_grounds(settings, lock, result)
    return memo.Watch(tuple(inputs + files), tuple(outputs), (*ZIG_ENV, *names))


def plan_watch(settings: Settings, lock: Lockfile, result: BuildResult) -> memo.Watch:
    """What a build's plan (:mod:`tasks.backends.headstart`) was worked out from, beyond the
    settings and arguments that key it: the lockfile, the crate's manifests, Cargo.lock and cargo
    config (:class:`tasks.backends.sources.Sources`); for docker the fetch stamp, the daemon and the
    builder image; for zig what :func:`_zig_grounds` says, the wrappers its recorded cargo is told of
    (:meth:`~tasks.backends.headstart.ProcessPlan.named_files`), and every environment variable (its
    plan runs in this process's environment)."""
    sources = find_sources(result.crate)
    inputs = (lock.path, *sources.manifests, sources.workspace / "Cargo.lock")
    if settings.backend == "zig":
        files, _ = _zig_grounds(settings, lock, result)
        named = result.plan.named_files() if isinstance(result.plan, ProcessPlan) else ()
        return memo.Watch((*inputs, *files, *named), (), ("*",))
    stamp = fetch.stamp_path(cargo_home(settings), result.image_tag, sources)
    return memo.Watch((*inputs, stamp), (), DOCKER_ENV, (result.image_tag,))


def _zig_grounds(settings: Settings, lock: Lockfile, result: BuildResult) -> tuple[list[Path], list[str]]:
    """What a zig build depends on beyond its sources: the toolchain it ran (``BuildResult.toolchain``:
    the pinned tools, rustc, cargo, the target's std), rustup's settings and overrides, cargo config
    files above the crate, and what the build scripts said they read (``rerun-if-changed`` paths;
    the names of their ``rerun-if-env-changed`` variables, second)."""
    info = result.crate
    rustup = Path(os.environ.get("RUSTUP_HOME") or Path.home() / ".rustup")
    files = [*result.toolchain, rustup / "settings.toml", cargo_home(settings) / "config.toml",
             cargo_home(settings) / "config"]
    for folder in (info.root, *info.root.parents):  # rustup's overrides and cargo's config, upward
        files += [folder / "rust-toolchain", folder / "rust-toolchain.toml",
                  folder / ".cargo" / "config", folder / ".cargo" / "config.toml"]
    said, names = zig_backend.build_script_reads(zig_backend.zig_target_dir(settings, lock, info))
    return files + said, names


def audit(libraries: Sequence[Path], lock: Lockfile, *, fixups: Sequence[FixupReport] = (),
          sysroot: Path | None = None) -> list[LibraryAudit]:
    """Each library's ELF audited against the lockfile's target (no Docker).

    The target's floors (:func:`tasks.elf.floors.resolve_floors`): its glibc, and for a
    known target (fedora20, centos7, bullseye, bookworm) its libgcc_s, libstdc++ and libz
    versions. ``fixups`` (``BuildResult.fixups``) let the report say what the fix-up changed.
    The host symbols are checked against ``sysroot``'s libraries when given (else by the rule
    that an unversioned undefined symbol is the host's, :mod:`tasks.elf.hostsyms`).
    """
    floors = resolve_floors(lock.target.name, lock.target.glibc, lock.target.arch)
    return audit_paths(libraries, floors=floors, fixups=fixups, sysroot=sysroot)


def smoke(dk: Docker, lock: Lockfile, settings: Settings, libraries: Sequence[Path], *,
          symbol: str | None = None, optional_symbol: str | None = "test", log: Log = print,
          on_line: Log | None = print, strict: bool = True, host: HostMode | None = None) -> list[SmokeResult]:
    """The smoke image, then each library dlopen'ed in it (RTLD_NOW) as nobody, offline, with
    the host mode ``host`` (default: auto, :mod:`tasks.dlopen.hostmode`).

    A passing verdict is cached by (library sha256, smoke image id, harness arguments, host plan).
    Raises SmokeError carrying the loader's own text when a library does not load
    (``strict=False``: returns the failed results instead).
    """
    tag = image(dk, lock, settings, "smoke", log=log, on_line=on_line or (lambda _: None))
    return smoke_in_image(dk, lock, libraries, image=tag, cache=settings.cache, symbol=symbol,
                          optional_symbol=optional_symbol, log=log, on_line=on_line, strict=strict,
                          transport=transport.for_daemon(dk, settings.remote), host=host)


# What loading on this machine depends on besides the library: the loader's search (ld.so.cache,
# rewritten by ldconfig when a package adds or replaces a library) and its variables.
NATIVE_LOADER = (Path("/etc/ld.so.cache"), Path("/etc/ld.so.preload"))
LOADER_ENV = ("LD_LIBRARY_PATH", "LD_PRELOAD", "LD_BIND_NOW", "LC_ALL")


def smoke_watch(settings: Settings, lock: Lockfile, results: Sequence[SmokeResult], *, host_symbols: str = "",
                named: bool = True) -> memo.Watch | None:
    """What a smoke run's verdicts depend on, for its memo (:mod:`tasks.memo`): the libraries (and,
    when none were named, the last build's record that chose them), the lockfile, the smoke image,
    the exports list; on this machine, its loader's cache and variables; the verdicts and harness
    kept under ``<cache>/smoke``. None (not replayable) when a result comes from anywhere else
    than the target's image and this machine (a sysroot stood in for an image out of reach), or
    when the harness ran in the image (the next run, using its verdict, says so and is recorded)."""
    tag = stages.plan(lock, Store(settings.cache), "smoke")[-1].tag
    in_image = f"{lock.target.name} (glibc {lock.target.glibc}, image {tag})"
    # replayed, a run says what this one said: so only a run whose image verdicts were all kept
    if not results or any(not (r.where == in_image and r.cached or r.where.startswith("this machine ("))
                          for r in results):
        return None
    libs = sorted({r.library for r in results})
    inputs = [lock.path, *libs, *NATIVE_LOADER, *[Path(p).resolve() for p in ("/lib64/ld-linux-x86-64.so.2",
                                                                           "/lib/ld-linux-aarch64.so.1")]]
    if not named:
        inputs.append(output_dir(settings.out, lock) / RECORD)
    if host_symbols:
        inputs.append(Path(host_symbols).resolve())
    outputs = memo.tree([settings.cache / "smoke"])
    return memo.Watch(tuple(inputs), tuple(outputs), (*DOCKER_ENV, *LOADER_ENV), (tag,))


def smoke_matrix(dk: Docker | None, lock: Lockfile, settings: Settings, libraries: Sequence[Path], *,
                 symbol: str | None = None, optional_symbol: str | None = "test",
                 log: Log = print, host: HostMode | None = None) -> list[matrix.Cell]:
    """Each library dlopen'ed on every glibc within reach: a :mod:`tasks.dlopen.matrix` table.

    Sysroots from the lockfile's pinned ``deb.<suite>.*`` packages and from each target's
    pinned glibc RPMs (a target without them: "not pinned"), the target's smoke image when
    ``dk`` is given ("no Docker" otherwise), and this machine. Never raises for a library
    that does not load: :func:`tasks.dlopen.matrix.failed` tells.
    """
    # the host program runs in each place that has it; a place without it is a note, not a failure
    host = dataclasses.replace(host or HostMode(), program_optional=True)

    def in_image(libs: list[Path], dk: Docker) -> list[SmokeResult]:
        return smoke(dk, lock, settings, libs, log=log, on_line=None, strict=False, symbol=symbol,
                     optional_symbol=optional_symbol, host=host)

    places = matrix.places(
        lock, settings.cache, symbol=symbol, optional_symbol=optional_symbol, log=log, host=host,
        inputs=lambda lf, names: inputs_ready(lf, settings, names, log),
        in_image=(lambda libs: in_image(libs, dk)) if dk is not None else None,
    )
    return matrix.run(libraries, places)


# ----------------------------------------------------------------------------- the tasks' runs
# What each invoke task runs: settings in, a result out. The tasks (tasks/cli) only read
# flags, call one of these, print and map errors to exit codes; every decision is here.

EXAMPLE_CRATE = PROJECT_ROOT / "examples" / "hello"


def load_lock(settings: Settings) -> Lockfile:
    """The lockfile these settings name: its selected target, and the linker override."""
    return lockfile.load(settings.lock, target=settings.target or None, linker=settings.linker or None)


def connect(settings: Settings) -> Docker:
    """The Docker daemon (``DOCKER_HOST`` or the local socket); DockerError when unreachable."""
    return docker_client.connect()


def build_run(settings: Settings, crate: Path | None, *, release: bool = True, features: str = "",
              extra_args: Sequence[str] = (), fix_weak: bool = True, log: Log = print,
              on_line: Log = print, early: HeadStart | None = None) -> BuildResult:
    """`invoke build`: the crate (default: the bundled example) built by the settings' backend and audited."""
    lock = load_lock(settings)
    dk = connect(settings) if settings.backend == "docker" else None
    return build(dk, lock, settings, Path(crate or EXAMPLE_CRATE), release=release, features=features,
                 extra_args=extra_args, fix_weak=fix_weak, log=log, on_line=on_line, early=early)


def audit_run(settings: Settings, paths: Sequence[Path], *, glibc: str = "", fix: bool = False,
              sysroot: Path | None = None) -> list[LibraryAudit]:
    """`invoke audit`: the named libraries (default: the last build's), fixed up first when ``fix``.

    Against the target's floors, or only a glibc version when ``glibc`` is given; host
    symbols against ``sysroot``'s own libraries when given, else by the unversioned rule.
    """
    lock = load_lock(settings)
    libs = distinct_paths(paths) or list(last_build(settings.out, lock.target.name).libraries)
    fixups = [fix_weak_needs(p) for p in libs] if fix else []  # once per file: its report is what changed
    if glibc:
        return audit_paths(libs, target_glibc=glibc, fixups=fixups, sysroot=sysroot)
    return audit(libs, lock, fixups=fixups, sysroot=sysroot)


def smoke_libraries(settings: Settings, paths: Sequence[Path], *, log: Log = print) -> list[Path]:
    """What `invoke smoke` loads: the named libraries, else the last build's, else the example built now.

    Building the example is a full `invoke build`: it is audited, and a violation stops here.
    """
    if paths:
        return [Path(p).resolve() for p in paths]
    lock = load_lock(settings)
    try:
        return list(last_build(settings.out, lock.target.name).libraries)
    except CompatError:
        pass
    log(f"Nothing built yet: building the bundled example {EXAMPLE_CRATE}")
    result = build_run(settings, EXAMPLE_CRATE, log=log, on_line=log)
    from tasks.elf.report import format_report  # presentation, only on this path

    log(format_report(result.audits))
    raise_on_violation(result.audits)
    return list(result.libraries)


def retain_note_due(settings: Settings, audits: Sequence[LibraryAudit]) -> bool:
    """Whether `invoke build` should say that its linker ignores SHF_GNU_RETAIN: the first
    time this cache sees that linker, not on every build (`invoke audit` always says it)."""
    due = False
    for linker in sorted({a.linker for a in audits if a.drops_retained and a.linker}):
        mark = settings.cache / "said" / f"retain-{digest_of(linker)[:16]}"
        if not mark.exists():
            write_atomic(mark, f"{linker} ignores SHF_GNU_RETAIN: said once\n".encode())
            due = True
    return due


def resolve_host(settings: Settings, mode: str = "", host_lib: str = "", host_symbols: str = "",
                 command: str = "") -> HostMode:
    """The host mode of a smoke run: ``--host-mode`` (default: config ``host_mode``), ``--host-lib``,
    ``--host-symbols``, ``--host`` (the real program, :mod:`tasks.dlopen.hostrun`); ConfigError for
    an unknown mode, a contradiction, an unreadable list or a command that cannot be parsed."""
    return HostMode.load(mode or settings.host_mode, host_lib, host_symbols, command)


def smoke_run(settings: Settings, libraries: Sequence[Path], *, symbol: str | None = None,
              sysroot: Path | None = None, current: bool = True, log: Log = print,
              on_line: Log = print, strict: bool = True, host_mode: str = "", host_lib: str = "",
              host_symbols: str = "", host_command: str = "") -> list[SmokeResult]:
    """`invoke smoke`: each library loaded under ``sysroot``'s glibc, else in the target's smoke image;
    then, when ``current``, on this machine's glibc too; every place with the host mode
    (:func:`resolve_host`). SmokeError (unless not ``strict``) on a failure.
    """
    host = resolve_host(settings, host_mode, host_lib, host_symbols, host_command)
    lock = load_lock(settings)
    n = len(libraries)
    if sysroot is not None:
        log(f"Smoke-testing {n} librar{'y' if n == 1 else 'ies'} under the glibc of {sysroot}")
        results = smoke_sysroot(libraries, sysroot, symbol=symbol, cache=settings.cache, on_line=on_line,
                                strict=strict, host=host)
    else:
        try:
            results = smoke(connect(settings), lock, settings, libraries, symbol=symbol, log=log,
                            on_line=on_line, strict=strict, host=host)
        except (DockerError, LockfileError) as exc:
            if not _zig_built(settings, lock, libraries):
                raise
            results = _smoke_without_image(settings, lock, libraries, exc, symbol=symbol, log=log, strict=strict,
                                           host=host)
    if current:
        log(f"Smoke-testing on this machine's glibc {platform.libc_ver()[1] or '?'}")
        results += smoke_native(libraries, symbol=symbol, cache=settings.cache, on_line=on_line, strict=strict,
                                host=host)
    return results


def _zig_built(settings: Settings, lock: Lockfile, libraries: Sequence[Path]) -> bool:
    """True when ``libraries`` are the last build's and the zig backend made them (no Docker needed)."""
    try:
        record = last_build(settings.out, lock.target.name)
    except CompatError:
        return False
    return record.backend == "zig" and set(record.libraries) == {Path(p).resolve() for p in libraries}


def _smoke_without_image(settings: Settings, lock: Lockfile, libraries: Sequence[Path], why: CompatError, *,
                         symbol: str | None, log: Log, strict: bool, host: HostMode) -> list[SmokeResult]:
    """A zig build whose target image is out of reach (no Docker, no RPM pins): loaded under every
    sysroot within reach instead, as `smoke --matrix` would, saying so."""
    found = [p for p in matrix.places(lock, settings.cache, symbol=symbol, log=log, in_image=None,
                                      host=dataclasses.replace(host, program_optional=True),
                                      inputs=lambda lf, names: inputs_ready(lf, settings, names, log))
             if p.how == "sysroot" and p.run is not None]
    if not found:
        raise why
    reason = str(why).split("; ", 1)[0]  # not its advice (to build with zig: that is done)
    log(f"The {lock.target.name} image is out of reach ({reason}); the zig build is loaded under "
        f"{', '.join(f'{p.name} (glibc {p.glibc})' for p in found)} instead, without Docker")
    results = [r for place in found for r in place.run(list(libraries))]  # type: ignore[misc]
    return check(results) if strict else results


def smoke_failure(results: Sequence[SmokeResult]) -> SmokeError | None:
    """The one error naming each library that failed and where, or None when all loaded."""
    try:
        check(results)
    except SmokeError as exc:
        return exc
    return None


def matrix_run(settings: Settings, libraries: Sequence[Path], *, symbol: str | None = None,
               log: Log = print, host_mode: str = "", host_lib: str = "",
               host_symbols: str = "", host_command: str = "") -> list[matrix.Cell]:
    """`invoke smoke --matrix`: every place within reach; without Docker, the image's row says so.

    Raises SmokeError naming each library and place that failed, after the table is made
    (:func:`matrix_failures` gives the text without raising). Every place loads with the
    host mode (:func:`resolve_host`).
    """
    host = resolve_host(settings, host_mode, host_lib, host_symbols, host_command)
    try:
        dk: Docker | None = connect(settings)
    except DockerError:
        dk = None
    return smoke_matrix(dk, load_lock(settings), settings, libraries, symbol=symbol, log=log, host=host)


def matrix_failures(cells: Sequence[matrix.Cell]) -> SmokeError | None:
    """The one error for the matrix's failed cells, or None when every reachable place loaded."""
    bad = matrix.failed(cells)
    if not bad:
        return None
    return SmokeError("; ".join(f"{b.library.name} failed on {b.place.name} (glibc {b.place.glibc}): {b.text}"
                                for b in bad))


def sysroot_run(settings: Settings, dest: Path | None = None) -> Path:
    """`invoke sysroot`: the target's pinned glibc RPMs unpacked (default: <cache>/sysroot-<target>)."""
    lock = load_lock(settings)
    where = dest or settings.cache / f"sysroot-{lock.target.name}"
    return make_sysroot(lock, Store(settings.cache), where)


def image_run(settings: Settings, upto: str, *, nocache: bool = False, push: str = "", log: Log = print,
              on_line: Log = print) -> str:
    """`invoke image` / `llvm` / `rust`: the stages up to ``upto``; its tag.

    For the builder the smoke stage is made too (one call readies both `build` and `smoke`).
    """
    dk, lock = connect(settings), load_lock(settings)
    tag = image(dk, lock, settings, upto, nocache=nocache, push=push, log=log, on_line=on_line)
    if upto == "builder" and not lock.target.cross_from:  # a cross target has no smoke image (qemu sysroots)
        image(dk, lock, settings, "smoke", nocache=nocache, push=push, log=log, on_line=on_line)
    return tag


def rpms_run(settings: Settings, *, refresh: bool = False, log: Log = print) -> Lockfile:
    """`invoke rpms`: the target's pinned RPMs fetched and their signatures checked; ``refresh`` re-pins first."""
    lock = load_lock(settings)
    if refresh:
        lock = refresh_rpm_pins(connect(settings), lock, settings, log=log)
    if lock.rpms:
        inputs_ready(lock, settings, ["rpms"], log)
    return lock


def prune_images(settings: Settings, *, log: Log = print) -> list[str]:
    """`invoke images --prune`: remove the project's image tags no target × linker × stage of the lockfile names."""
    store = Store(settings.cache)
    keep: set[str] = set()
    for name in lockfile.load(settings.lock).targets:
        for linker in lockfile.LINKERS:
            lf = lockfile.load(settings.lock, name, linker=linker)
            keep |= {p.tag for up in ("builder", "smoke", "llvm") for p in stages.plan(lf, store, up)}
            keep.add(stages.base_tag(lf))
    return stages.prune(connect(settings), keep, log=log)


def project_images(settings: Settings) -> list[tuple[str, str, str]]:
    """`invoke images`: (stage, tag, id) of every compatbuild image on the daemon."""
    return stages.project_images(connect(settings))


def fetch_run(settings: Settings, *, only: str | None = None) -> list[download.Fetched]:
    """`invoke download`: every input of the lockfile (or ``only`` one) into the store."""
    return download.fetch_all(load_lock(settings), settings, only=only)


def inputs_watch(settings: Settings) -> memo.Watch:
    """What a cached `download` or `verify` depends on, for its memo (:mod:`tasks.memo`): the
    lockfile, and every file and folder of the store's entries, url records and verify stamps
    (a removed, added or rewritten one is a miss)."""
    root = Store(settings.cache).root
    return memo.Watch(inputs=(settings.lock,), outputs=tuple(memo.tree([root / "sha256", root / "urls",
                                                                         root / "verified"])))


def verify_run(settings: Settings, *, only: str | None = None) -> list[verify.Verified]:
    """`invoke verify`: hashes, signatures and signed checksum lists of the inputs."""
    return verify.verify_all(load_lock(settings), Store(settings.cache), only=only)


def lock_run(settings: Settings, *, rust: str = "", log: Log = print) -> None:
    """`invoke lock`: re-pin Rust to ``rust`` (when given) from its signed channel manifest, then fetch and
    verify every input, record unknown key hashes on first verified fetch, and record sizes."""
    store = Store(settings.cache)
    if rust:

        def fetch_url(url: str) -> Path:
            name = lockfile.url_basename(url)
            res = lockfile.Resource(f"channel file {name}", url, name, None, cap=lockfile.KEY_MAX)
            store.forget_url(url)  # a channel manifest changes: always fetch the current one
            return download.fetch(res, store, mirror=settings.mirror).path

        pins.refresh_rust(settings.lock, store, version=rust, fetch=fetch_url)
    lf = lockfile.load(settings.lock)
    log(download.summary(download.fetch_all(lf, settings)))
    log(verify.summary(verify.verify_all(lf, store)))
    if not pins.record_unpinned(settings.lock, store, log):
        log(f"{settings.lock.name}: no unpinned key hashes to record")
    pins.record_sizes(settings.lock, store, log)


def test_profile_run(settings: Settings, root: Path | None = None) -> Path:
    """`invoke test-profile`: the offline profile (:mod:`tasks.profile`) prepared; its lockfile."""
    from tasks import profile  # debootstrap, packing a toolchain: imported only when this runs

    where = root or settings.cache / "test-profile"
    return profile.prepare_profile(where, cache=settings.cache / "testprofile", store=Store(settings.cache))
