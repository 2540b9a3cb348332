"""`invoke smoke --matrix`: dlopen(RTLD_NOW) each library on every glibc within reach.

The places, oldest glibc first:

- a sysroot per Debian suite whose ``.deb``\\ s the lockfile pins as artifacts named
  ``deb.<suite>.<package>`` (bullseye 2.31, bookworm 2.36, trixie 2.41; ``bullseye-arm64`` …
  for arm64): no Docker; the suite's glibc and arch are read from its ``libc6`` file name
  (``libc6_2.31-13+deb11u11_arm64.deb``);
- a sysroot per lockfile target whose glibc RPMs are pinned (fedora20 2.18, centos7
  2.17); a target that pins none is shown as "not pinned", not a failure;
- the target's smoke image, when the Docker daemon is there ("no Docker" otherwise);
- this machine's glibc.

Only the places of the lockfile target's arch are in the table: for an aarch64 target, the
arm64 sysroots, whose harness the pinned zig cross-compiles and whose loader runs under
``qemu-aarch64-static`` (the "how" column says ``qemu``); the target image and this x86_64
machine are shown as unavailable for it. A library of another arch than a place's is
refused there in one line (:func:`tasks.arches.mismatch`), before anything runs.

Each cell is "loaded" or the loader's own words (``version `GLIBC_2.34' not found``).
:func:`tasks.pipeline.smoke_matrix` composes it: it hands :func:`places` the download step
and the image runner, then :func:`run` loads and :func:`table` prints.
"""

from __future__ import annotations

import platform
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tasks import arches
from tasks.arches import Arch
from tasks.dlopen.harness import CrossCC
from tasks.dlopen.hostmode import HostMode
from tasks.dlopen.smoke import SmokeResult, smoke_native, smoke_sysroot
from tasks.dlopen.sysroot import make_sysroot, make_sysroot_from_debs
from tasks.errors import CompatError
from tasks.inputs import lockfile
from tasks.inputs.lockfile import Artifact, Lockfile
from tasks.store import Store

Runner = Callable[[list[Path]], list[SmokeResult]]  # loads each library, never raises on a failed load
_LIBC6 = re.compile(r"^libc6_(\d+\.\d+)-")
_DEB_ARCH = re.compile(r"_([a-z0-9]+)\.deb$")


@dataclass(frozen=True)
class Place:
    """Somewhere to load: a name, its glibc, how (sysroot, container, host), and a runner or why not."""

    name: str
    glibc: str
    how: str
    run: Runner | None = field(default=None, compare=False)
    unavailable: str = ""  # "not pinned", "no Docker: ...": shown in every cell of the row
    arch: str = "x86_64"


@dataclass(frozen=True)
class Cell:
    """One library on one place: loaded (True/False), or None when the place was unavailable."""

    library: Path
    place: Place
    loaded: bool | None
    text: str

    def to_dict(self) -> dict[str, object]:
        return {"library": str(self.library), "place": self.place.name, "glibc": self.place.glibc,
                "how": self.place.how, "arch": self.place.arch, "loaded": self.loaded, "text": self.text}


def deb_suites(lock: Lockfile) -> dict[str, tuple[str, list[Artifact]]]:
    """Suite → (glibc, its pinned .deb artifacts), from artifacts named ``deb.<suite>.<package>``."""
    suites: dict[str, list[Artifact]] = {}
    for a in lock.artifacts:
        parts = a.name.split(".", 2)
        if len(parts) == 3 and parts[0] == "deb":
            suites.setdefault(parts[1], []).append(a)
    found: dict[str, tuple[str, list[Artifact]]] = {}
    for suite, debs in suites.items():
        glibc = next((m.group(1) for a in debs if (m := _LIBC6.match(a.filename))), "")
        if glibc:
            found[suite] = (glibc, debs)
    return found


def deb_arch(debs: list[Artifact]) -> Arch:
    """The arch of a suite's pinned .debs: the one its libc6 file names (``_arm64.deb``)."""
    for a in debs:
        m = _DEB_ARCH.search(a.filename)
        if _LIBC6.match(a.filename) and m:
            return arches.by_debian(m.group(1)) or arches.X86_64
    return arches.X86_64


def places(lock: Lockfile, cache: Path, *, inputs: Callable[[Lockfile, list[str]], None],
           in_image: Runner | None, symbol: str | None = None, optional_symbol: str | None = "test",
           log: Callable[[str], None] = print, host: HostMode | None = None) -> list[Place]:
    """Every place within reach for ``lock``, of its target's arch: its .deb sysroots, each
    target's RPM sysroot, the target image (``in_image``; None: "no Docker") and this machine
    (the last two unavailable for another arch than this machine's, whose sysroots run under
    qemu with a harness the pinned zig builds, installed through ``inputs`` when first needed).

    ``inputs(lock, names)`` downloads and verifies the named artifacts (or "rpms") before a
    sysroot is made from them; sysroots live in ``<cache>/sysroots/<name>``. Every place
    loads with the host mode ``host`` (:mod:`tasks.dlopen.hostmode`).
    """
    store = Store(cache)
    found: list[Place] = []
    want = arches.get(lock.target.arch)
    here = arches.host() or arches.X86_64
    how = "sysroot" if want == here else "qemu"
    zig: list[CrossCC] = []  # the pinned zig, installed when the first place of another arch runs

    def cross() -> CrossCC | None:
        if want == here:
            return None
        if not zig:
            from tasks.backends import zigtools  # only a place of another arch needs it

            inputs(lock, list(zigtools.ARTIFACTS))
            tools = zigtools.install(lock, store, cache, log=log)
            zig.append(CrossCC(tools.zig, cache / "zig" / "cache"))
        return zig[0]

    def load_in(root: Path, libs: list[Path]) -> list[SmokeResult]:
        return smoke_sysroot(libs, root, cache=cache, strict=False, symbol=symbol, optional_symbol=optional_symbol,
                             host=host, cross=cross())

    for suite, (glibc, debs) in deb_suites(lock).items():
        if deb_arch(debs) != want:
            continue

        def on_debs(libs: list[Path], suite: str = suite, debs: list[Artifact] = debs) -> list[SmokeResult]:
            inputs(lock, [a.name for a in debs])
            return load_in(make_sysroot_from_debs([store.path(a.sha256) for a in debs],
                                                  cache / "sysroots" / suite, log=log), libs)
        found.append(Place(suite, glibc, how, on_debs, arch=want.name))
    for name in lock.targets:
        t = lockfile.load(lock.path, name)
        if t.target.arch != want.name:
            continue
        if not any(r.name == "glibc" for r in t.rpms):
            found.append(Place(name, t.target.glibc, how, unavailable="not pinned", arch=want.name))
            continue

        def on_rpms(libs: list[Path], t: Lockfile = t) -> list[SmokeResult]:
            inputs(t, ["rpms"])
            return load_in(make_sysroot(t, store, cache / "sysroots" / t.target.name, log=log), libs)
        found.append(Place(name, t.target.glibc, how, on_rpms, arch=want.name))
    image = f"{lock.target.name} image"
    if want != here:
        found.append(Place(image, lock.target.glibc, "container", arch=want.name,
                           unavailable=f"no {want.debian} image (qemu sysroots instead)"))
    elif in_image is None:
        found.append(Place(image, lock.target.glibc, "container", unavailable="no Docker"))
    elif lock.target.packages and not lock.rpms:
        found.append(Place(image, lock.target.glibc, "container", unavailable="not pinned"))
    else:
        found.append(Place(image, lock.target.glibc, "container", in_image))
    if want != here:
        found.append(Place("this machine", platform.libc_ver()[1] or "?", "host", arch=here.name,
                           unavailable=f"an {here.name} machine"))
    else:
        found.append(Place("this machine", platform.libc_ver()[1] or "?", "host",
                           lambda libs: smoke_native(libs, cache=cache, strict=False, symbol=symbol,
                                                     optional_symbol=optional_symbol, host=host)))
    return found


def _glibc_key(place: Place) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in place.glibc.split("."))
    except ValueError:
        return (999,)


def run(libraries: Sequence[Path], places: Sequence[Place]) -> list[Cell]:
    """Every library on every place (oldest glibc first); a place's own error fills its row."""
    cells: list[Cell] = []
    for place in sorted(places, key=_glibc_key):
        if place.run is None:
            cells += [Cell(lib, place, None, place.unavailable or "unavailable") for lib in libraries]
            continue
        try:
            results = place.run(list(libraries))
        except CompatError as exc:  # the place itself broke (sysroot, image): say so in its row
            cells += [Cell(lib, place, False, str(exc)) for lib in libraries]
            continue
        for lib, r in zip(libraries, results, strict=True):
            cells.append(Cell(lib, place, r.ok, r.text))
    return cells


def failed(cells: Sequence[Cell]) -> list[Cell]:
    """The cells where a library was tried and did not load."""
    return [c for c in cells if c.loaded is False]


def table(cells: Sequence[Cell]) -> str:
    """A markdown table: one row per place (glibc, how), one column per library."""
    libs: list[Path] = []
    rows: dict[str, list[Cell]] = {}
    for c in cells:
        if c.library not in libs:
            libs.append(c.library)
        rows.setdefault(c.place.name, []).append(c)
    head = ["glibc", "where", *(lib.name for lib in libs)]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for name, row in rows.items():
        place = row[0].place
        texts = [_cell_text(c) for c in row]
        lines.append("| " + " | ".join([place.glibc, f"{name} ({place.how})", *texts]) + " |")
    return "\n".join(lines)


def _cell_text(c: Cell) -> str:
    return c.text.replace("|", "\\|")
