"""What both backends share: the build options, the folders, the outputs and their record.

    BuildOptions ─► docker.build_crate │ zig.build_crate ─► finish() ─► BuildResult
                                                       └─► <out>/<target>/last-build.json

Each backend runs cargo its own way, hands the cdylibs cargo's JSON messages name
(:func:`cdylib_files`) to :func:`copy_out`, and ends in :func:`finish`: the weak-version
fix-up, the record `smoke` and `audit` default to, and the :class:`BuildResult`.

An output folder is not only compatbuild's: ``--out DIR`` may name a folder of the user's.
So every name compatbuild writes there is listed first in the folder's marker
(:data:`MARKER`), and a file that exists under a name the marker does not list (the user's
own ``libhello.so`` or ``last-build.json``) is never replaced: :class:`OutputError`, exit 12,
as for every other output (:mod:`tasks.atomic`). A folder written before the marker existed
is known by its own record, whose libraries are adopted as compatbuild's.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from tasks.atomic import copy_atomic, lock_for, read_stamp, write_atomic
from tasks.backends.crate import CrateInfo
from tasks.elf.audit import LibraryAudit
from tasks.elf.fixup import FixupReport, fix_weak_needs
from tasks.errors import OutputError

if TYPE_CHECKING:  # annotations only: a replayed result (tasks/memo.py) loads none of them
    from tasks.backends.headstart import Plan, ProcessPlan
    from tasks.inputs.lockfile import Lockfile
    from tasks.settings import Settings

RECORD = "last-build.json"
MARKER = ".compatbuild-outputs.json"  # every name compatbuild wrote into an output folder


@dataclass(frozen=True)
class BuildOptions:
    """How to build, the same for every backend: the profile, features, extra cargo args, outputs."""

    release: bool = True
    features: str = ""
    extra_args: tuple[str, ...] = ()
    out: Path | None = None  # default: settings.out
    fix_weak: bool = True  # the weak-version fix-up on each library

    def out_root(self, settings: Settings) -> Path:
        """Every target's outputs: ``out`` or ``settings.out``, resolved."""
        return Path(self.out or settings.out).expanduser().resolve()


@dataclass(frozen=True)
class BuildResult:
    """What a build produced: the copied libraries, where, and with which image."""

    libraries: tuple[Path, ...]
    out_dir: Path
    image_tag: str
    crate: CrateInfo
    seconds: float = 0.0
    fixups: tuple[FixupReport, ...] = ()  # the weak-version fix-up of each library, when on
    audits: tuple[LibraryAudit, ...] = ()  # each library judged against the target (the pipeline's audit)
    toolchain: tuple[Path, ...] = ()  # host files the build ran (zig: the tools, rustc, cargo, the std)
    plan: Plan | ProcessPlan | None = None  # what it ran, for the next build's head start (headstart.py)


@dataclass(frozen=True)
class LastBuild:
    """The record ``<out>/<target>/last-build.json`` keeps for `invoke smoke` and `invoke audit`."""

    libraries: tuple[Path, ...]
    crate: Path
    image_tag: str
    built_at: str
    backend: str = "docker"  # which backend built them: docker or zig


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


def cargo_flags(info: CrateInfo, opts: BuildOptions) -> list[str]:
    """The flags every backend gives cargo: JSON messages, the profile, features, workspace."""
    flags = ["--message-format=json-render-diagnostics"]
    flags += ["--release"] if opts.release else []
    flags += ["--features", opts.features] if opts.features else []
    flags += ["--workspace"] if info.workspace else []
    return flags + list(opts.extra_args)


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
    claim(out_dir, [RECORD])
    write_atomic(out_dir / RECORD, (json.dumps(record, indent=2) + "\n").encode())


def claim(out_dir: Path, names: Sequence[str]) -> None:
    """List ``names`` in ``out_dir``'s marker before they are written; OutputError (nothing
    written) when one of them exists there and compatbuild did not make it."""
    marker = out_dir / MARKER
    try:
        with lock_for(marker):
            stamp = read_stamp(out_dir, MARKER)
            files = stamp.get("files") if isinstance(stamp, dict) else None
            ours = {str(n) for n in files} if isinstance(files, list) else _recorded(out_dir)
            for name in names:
                path = out_dir / name
                if name not in ours and (path.exists() or path.is_symlink()):
                    raise OutputError(f"{path} exists and was not made by compatbuild; refusing to replace "
                                      "it (remove it yourself or choose another --out)")
            if files is None or not set(names) <= ours:
                write_atomic(marker, (json.dumps({"files": sorted(ours | set(names))}) + "\n").encode())
    except OSError as exc:
        raise OutputError(f"cannot write into {out_dir}: {exc.strerror or exc}") from None


def _recorded(out_dir: Path) -> set[str]:
    """What a folder written before :data:`MARKER` existed holds of compatbuild's: its record
    (when it reads as one) and the libraries it names in that folder; else nothing."""
    try:
        data = json.loads((out_dir / RECORD).read_text())
    except (OSError, ValueError):
        return set()
    if not isinstance(data, dict) or not {"libraries", "crate", "image", "target"} <= set(data) \
            or not isinstance(data["libraries"], list):
        return set()
    return {RECORD} | {Path(str(p)).name for p in data["libraries"] if Path(str(p)).parent == out_dir}


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
        found = LastBuild(libs, Path(data["crate"]), str(data["image"]), str(data["time"]),
                          str(data.get("backend", "docker")))
    except FileNotFoundError:
        what = f" for {target}" if target else ""
        raise OutputError(f"no build recorded{what} in {out}; run `invoke build` first") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise OutputError(f"{path}: unreadable build record ({exc}); run `invoke build`") from None
    missing = [p for p in libs if not p.is_file()]
    if missing:
        raise OutputError(f"{missing[0]} from the last build is gone; run `invoke build` again")
    return found


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


# What finishing a build imports after cargo ends (the output folder's lock, the fix-up's and the
# audit's pyelftools): loaded by :func:`preload` while cargo runs, when this process only waits.
FINISH_IMPORTS = ("filelock", "elftools.common.exceptions", "elftools.common.utils", "elftools.elf.elffile",
                  "elftools.elf.dynamic", "elftools.elf.gnuversions", "elftools.elf.sections")


def preload() -> None:
    """Import :data:`FINISH_IMPORTS` in a thread; each backend calls it as it starts waiting for cargo."""
    import importlib
    import threading

    def load() -> None:
        for name in FINISH_IMPORTS:
            try:
                importlib.import_module(name)
            except ImportError:
                return  # the step that needs it says so, in its own words

    threading.Thread(target=load, name="compatbuild-preload", daemon=True).start()


def copy_out(lib: Path, out_dir: Path) -> Path:
    """Copy a built library into ``out_dir`` through the atomic-output primitive; OutputError
    when ``out_dir`` holds a file of its name, or a record, that compatbuild did not make."""
    claim(out_dir, [lib.name, RECORD])  # the record too: refused before any library is replaced
    try:
        return copy_atomic(lib, out_dir / lib.name, mode=0o755)
    except OSError as exc:
        raise OutputError(f"cannot copy {lib.name} to {out_dir}: {exc.strerror or exc}") from None


def finish(libraries: Sequence[Path], info: CrateInfo, lock: Lockfile, out_dir: Path, opts: BuildOptions, *,
           image: str, started: float, fixups: Sequence[FixupReport] | None = None, **extra: str) -> BuildResult:
    """The fix-up (when on), the record, the result: how every backend's build ends.

    ``fixups``: the reports of copies a stamped build made and fixed up (they are its bytes
    still), taken instead of running the fix-up on them again.
    """
    if fixups is None:
        fixups = tuple(fix_weak_needs(p) for p in libraries) if opts.fix_weak else ()
    seconds = time.monotonic() - started
    write_record(out_dir, libraries, info, lock, image=image, release=opts.release, seconds=seconds, **extra)
    return BuildResult(tuple(libraries), out_dir, image, info, seconds, tuple(fixups))
