"""Build a crate's cdylibs in the builder image, as the calling user, and copy them out.

    crate ──► inspect ──► cargo fetch in the image (network; skipped when unchanged)
          ──► cargo build --offline in the image (no network) ──► <out>/<target>/lib*.so

``build_crate`` is given the builder image's tag (:func:`tasks.pipeline.build` makes it);
it never builds images. Everything is keyed by the lockfile's target, so one checkout
builds for several targets without collisions:

- the target dir is ``<cache>/targets/<target>/<crate>-<hash of its path>`` (incremental);
- the outputs go to ``<out>/<target>/`` with that target's ``last-build.json``.

Mounts: the crate's workspace read-write (cargo may write Cargo.lock) and every path
package outside it read-only (:mod:`tasks.crates.sources`), each at its *own absolute
path*, so cargo's relative ``path = "../common"`` stays valid; ``<cache>/cargo-home`` at
/cargo and the target dir at /target. Registry dependencies are fetched by the image's own
cargo (:mod:`tasks.crates.fetch`). cargo's human output (stderr) streams live; its JSON
messages (stdout) name the artifacts. When none of the build container's inputs changed
since the last build and its copies are intact (:mod:`tasks.crates.uptodate`), no
container runs and nothing is said.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

from tasks.atomic import copy_atomic, write_atomic
from tasks.builder.docker_client import Docker
from tasks.crates import uptodate
from tasks.crates.crate import ADD_CDYLIB, CrateInfo, inspect_crate
from tasks.crates.fetch import cargo_error, ensure_fetched
from tasks.crates.fixup import FixupReport, fix_weak_needs
from tasks.crates.sources import Sources, find_sources
from tasks.crates.transport import Bind, Mount, for_daemon
from tasks.errors import CargoError, CrateError, OutputError
from tasks.inputs.lockfile import Lockfile
from tasks.settings import Settings

RECORD = "last-build.json"
# Folders of the image that a crate mounted at its own path must not cover.
RESERVED = ("/bin", "/cargo", "/dev", "/etc", "/lib", "/lib64", "/proc", "/sbin", "/sys",
            "/target", "/usr")
Log = Callable[[str], None]


@dataclass(frozen=True)
class BuildResult:
    """What a build produced: the copied libraries, where, and with which image."""

    libraries: tuple[Path, ...]
    out_dir: Path
    image_tag: str
    crate: CrateInfo
    seconds: float = 0.0
    fixups: tuple[FixupReport, ...] = ()  # the weak-version fix-up of each library, when on


@dataclass(frozen=True)
class LastBuild:
    """The record ``<out>/<target>/last-build.json`` keeps for `invoke smoke` and `invoke audit`."""

    libraries: tuple[Path, ...]
    crate: Path
    image_tag: str
    built_at: str


def cargo_home(settings: Settings) -> Path:
    """The cargo home shared by every build (the registry persists between builds)."""
    return settings.cache / "cargo-home"


def target_dir(settings: Settings, lock: Lockfile, crate: CrateInfo) -> Path:
    """A target dir per target and workspace path, so each crate's rebuilds are incremental."""
    key = hashlib.sha256(str(crate.workspace_root).encode()).hexdigest()[:16]
    return settings.cache / "targets" / lock.target.name / f"{crate.workspace_root.name}-{key}"


def output_dir(out: Path, lock: Lockfile) -> Path:
    """Where builds for the lockfile's target put their libraries: ``<out>/<target name>``."""
    return Path(out).expanduser().resolve() / lock.target.name


def build_crate(
    dk: Docker,
    lock: Lockfile,
    settings: Settings,
    crate: Path,
    *,
    image: str,
    release: bool = True,
    features: str = "",
    extra_args: Sequence[str] = (),
    out: Path | None = None,
    fix_weak: bool = True,
    log: Log = print,
    on_line: Log = print,
) -> BuildResult:
    """Build ``crate``'s cdylibs in the builder ``image`` (a tag; it must exist).

    The libraries are copied into ``<out>/<target name>/`` (``out`` defaults to
    ``settings.out``) and recorded there in last-build.json. With ``fix_weak`` (the
    default) each copy then goes through the weak-version fix-up
    (:func:`tasks.crates.fixup.fix_weak_needs`): version needs whose references are all
    weak are marked weak, as lld 23 will. Raises CrateError (not a cdylib crate, unusable
    path), CargoError (fetch or build failed), OutputError, FixupError.
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

    cmd = ["cargo", "build", "--offline", *cargo_flags(info, release=release, features=features,
                                                       extra_args=extra_args)]
    out_dir = output_dir(out or settings.out, lock)
    outputs_root = Path(out or settings.out).expanduser().resolve()  # every target's copies
    inputs = uptodate.material(image, cmd, sources.mounts(), out_dir, exclude=(outputs_root, settings.cache))
    inputs["fix_weak"] = fix_weak
    libraries = uptodate.fresh_outputs(target, inputs)  # nothing changed: no container at all
    fresh = libraries is None
    if libraries is None:
        libraries = _cargo_build(tp, image, info, cmd, target, out_dir, log=log, on_line=on_line,
                                 mounts=mounts, workdir=workdir, user=user, glibc=lock.target.glibc)
    # on a fresh copy this edits it; on a stamped one it only reads (nothing left to change)
    fixups = tuple(fix_weak_needs(p) for p in libraries) if fix_weak else ()
    if fresh:
        uptodate.record(target, inputs, libraries)  # the stamp holds the fixed-up bytes
        for p in libraries:
            log(f"Built {p}")
    seconds = time.monotonic() - started
    write_record(out_dir, libraries, info, lock, image=image, release=release, seconds=seconds)
    return BuildResult(libraries, out_dir, image, info, seconds, fixups)


def cargo_flags(info: CrateInfo, *, release: bool, features: str, extra_args: Sequence[str]) -> list[str]:
    """The flags every backend gives cargo: JSON messages, the profile, features, workspace."""
    flags = ["--message-format=json-render-diagnostics"]
    flags += ["--release"] if release else []
    flags += ["--features", features] if features else []
    flags += ["--workspace"] if info.workspace else []
    return flags + list(extra_args)


def write_record(out_dir: Path, libraries: Sequence[Path], info: CrateInfo, lock: Lockfile, *, image: str,
                 release: bool, seconds: float, **extra: str) -> None:
    """Write ``<out>/<target>/last-build.json``, what `smoke` and `audit` default to."""
    record = {
        "libraries": [str(p) for p in libraries],
        "crate": str(info.root),
        "name": info.name,
        "image": image,
        **extra,
        "target": {"name": lock.target.name, "glibc": lock.target.glibc},
        "release": release,
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
        "seconds": round(seconds, 1),
    }
    write_atomic(out_dir / RECORD, (json.dumps(record, indent=2) + "\n").encode())


def _cargo_build(tp: Bind, image: str, info: CrateInfo, cmd: list[str], target: Path, out_dir: Path,
                 *, log: Log, on_line: Log, mounts: list[Mount], workdir: str, user: str,
                 glibc: str) -> tuple[Path, ...]:
    """Run cargo in the build container (no network); copy the cdylibs it names into ``out_dir``.

    On a remote daemon the cdylibs come back from its target volume into ``target`` first.
    """
    log(f"Building {info.name} in {image} (glibc {glibc})")

    def outputs(stdout: str) -> list[tuple[str, Path]]:
        return [("/target/" + p.relative_to(target).as_posix(), p) for p in _cdylibs(stdout, target)]

    status, stdout, stderr = tp.run_split(
        image, cmd, mounts, bring_back=outputs, on_stderr=on_line, user=user, working_dir=workdir,
        environment={"CARGO_TERM_COLOR": "never"}, network_disabled=True,
    )
    if status != 0:
        raise CargoError(f"cargo build of {info.name} failed: {cargo_error(stderr, status)}")
    built = _cdylibs(stdout, target)
    if not built:
        raise CrateError(f"cargo built no cdylib for {info.name}; {ADD_CDYLIB}")
    return tuple(copy_out(p, out_dir) for p in built)


def last_build(out: Path, target: str | None = None) -> LastBuild:
    """The libraries of the last build for ``target`` into ``out`` (``<out>/<target>``).

    Without ``target``: the one target built into ``out``, if only one was. OutputError
    when there is no record, or its libraries are gone.
    """
    out = Path(out)
    if target is None:
        built = sorted(p.parent.name for p in out.glob(f"*/{RECORD}"))
        if len(built) > 1:
            raise OutputError(f"{out} holds builds for {', '.join(built)}; name the lockfile (--lock)")
        target = built[0] if built else ""
    path = out / target / RECORD
    try:
        data = json.loads(path.read_text())
        libs = tuple(Path(p) for p in data["libraries"])
        found = LastBuild(libs, Path(data["crate"]), str(data["image"]), str(data["time"]))
    except FileNotFoundError:
        what = f" for {target}" if target else ""
        raise OutputError(f"no build recorded{what} in {out}; run `invoke build` first") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise OutputError(f"{path}: unreadable build record ({exc}); run `invoke build`") from None
    missing = [p for p in libs if not p.is_file()]
    if missing:
        raise OutputError(f"{missing[0]} from the last build is gone; run `invoke build` again")
    return found


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


def cdylib_files(stdout: str) -> list[PurePosixPath]:
    """The cdylib .so files cargo's compiler-artifact messages name, as cargo saw them, once each."""
    found: list[PurePosixPath] = []
    for line in stdout.splitlines():
        if not line.startswith("{"):
            continue
        try:
            msg = json.loads(line)
        except ValueError:
            continue
        if msg.get("reason") != "compiler-artifact":
            continue
        kinds = msg.get("target", {}).get("crate_types") or msg.get("target", {}).get("kind", [])
        if "cdylib" not in kinds:
            continue
        for name in msg.get("filenames", []):
            path = PurePosixPath(name)
            if path.suffix == ".so" and path not in found:
                found.append(path)
    return found


def _cdylibs(stdout: str, target: Path) -> list[Path]:
    """Host paths of the cdylibs cargo built under the container's /target."""
    return [target / p.relative_to("/target") for p in cdylib_files(stdout) if p.is_relative_to("/target")]


def copy_out(lib: Path, out_dir: Path) -> Path:
    """Copy a built library into ``out_dir`` through the atomic-output primitive."""
    try:
        return copy_atomic(lib, out_dir / lib.name, mode=0o755)
    except OSError as exc:
        raise OutputError(f"cannot copy {lib.name} to {out_dir}: {exc.strerror or exc}") from None
