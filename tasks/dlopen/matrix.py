"""`invoke smoke --matrix`: dlopen(RTLD_NOW) each library on every glibc within reach.

The places, oldest glibc first:

- a sysroot per Debian suite whose ``.deb``\\ s the lockfile pins as artifacts named
  ``deb.<suite>.<package>`` (bullseye 2.31, bookworm 2.36): no Docker; the suite's glibc is
  read from its ``libc6`` file name;
- a sysroot per lockfile target whose glibc RPMs are pinned (fedora20 2.18, centos7
  2.17); a target that pins none is shown as "not pinned", not a failure;
- the target's smoke image, when the Docker daemon is there ("no Docker" otherwise);
- this machine's glibc.

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

from tasks.dlopen.smoke import SmokeResult, smoke_native, smoke_sysroot
from tasks.dlopen.sysroot import make_sysroot, make_sysroot_from_debs
from tasks.errors import CompatError
from tasks.inputs import lockfile
from tasks.inputs.lockfile import Artifact, Lockfile
from tasks.store import Store

Runner = Callable[[list[Path]], list[SmokeResult]]  # loads each library, never raises on a failed load
_LIBC6 = re.compile(r"^libc6_(\d+\.\d+)-")


@dataclass(frozen=True)
class Place:
    """Somewhere to load: a name, its glibc, how (sysroot, container, host), and a runner or why not."""

    name: str
    glibc: str
    how: str
    run: Runner | None = field(default=None, compare=False)
    unavailable: str = ""  # "not pinned", "no Docker: ...": shown in every cell of the row


@dataclass(frozen=True)
class Cell:
    """One library on one place: loaded (True/False), or None when the place was unavailable."""

    library: Path
    place: Place
    loaded: bool | None
    text: str

    def to_dict(self) -> dict[str, object]:
        return {"library": str(self.library), "place": self.place.name, "glibc": self.place.glibc,
                "how": self.place.how, "loaded": self.loaded, "text": self.text}


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


def places(lock: Lockfile, cache: Path, *, inputs: Callable[[Lockfile, list[str]], None],
           in_image: Runner | None, symbol: str | None = None, optional_symbol: str | None = "test",
           log: Callable[[str], None] = print) -> list[Place]:
    """Every place within reach for ``lock``: its .deb sysroots, each target's RPM sysroot,
    the target image (``in_image``; None: "no Docker") and this machine.

    ``inputs(lock, names)`` downloads and verifies the named artifacts (or "rpms") before a
    sysroot is made from them; sysroots live in ``<cache>/sysroots/<name>``.
    """
    store = Store(cache)
    found: list[Place] = []

    def load_in(root: Path, libs: list[Path]) -> list[SmokeResult]:
        return smoke_sysroot(libs, root, cache=cache, strict=False, symbol=symbol, optional_symbol=optional_symbol)

    for suite, (glibc, debs) in deb_suites(lock).items():
        def on_debs(libs: list[Path], suite: str = suite, debs: list[Artifact] = debs) -> list[SmokeResult]:
            inputs(lock, [a.name for a in debs])
            return load_in(make_sysroot_from_debs([store.path(a.sha256) for a in debs],
                                                  cache / "sysroots" / suite, log=log), libs)
        found.append(Place(suite, glibc, "sysroot", on_debs))
    for name in lock.targets:
        t = lockfile.load(lock.path, name)
        if not any(r.name == "glibc" for r in t.rpms):
            found.append(Place(name, t.target.glibc, "sysroot", unavailable="not pinned"))
            continue

        def on_rpms(libs: list[Path], t: Lockfile = t) -> list[SmokeResult]:
            inputs(t, ["rpms"])
            return load_in(make_sysroot(t, store, cache / "sysroots" / t.target.name, log=log), libs)
        found.append(Place(name, t.target.glibc, "sysroot", on_rpms))
    image = f"{lock.target.name} image"
    if in_image is None:
        found.append(Place(image, lock.target.glibc, "container", unavailable="no Docker"))
    elif lock.target.packages and not lock.rpms:
        found.append(Place(image, lock.target.glibc, "container", unavailable="not pinned"))
    else:
        found.append(Place(image, lock.target.glibc, "container", in_image))
    found.append(Place("this machine", platform.libc_ver()[1] or "?", "host",
                       lambda libs: smoke_native(libs, cache=cache, strict=False, symbol=symbol,
                                                 optional_symbol=optional_symbol)))
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
            cells.append(Cell(lib, place, r.ok, "loaded" if r.ok else (r.error or "failed")))
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
    if c.loaded:
        return "loaded"
    return c.text.replace("|", "\\|")
