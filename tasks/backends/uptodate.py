"""Whether a build would change nothing: the inputs of the build container, stamped.

The build container sees only its image, its command and its mounts, so those are its
inputs: the image tag (a digest of the toolchain's inputs), the cargo command, and every
file under the mounted source folders (the workspace and the path packages outside it),
listed by path and the sha256 of its bytes. The registry in the cargo home is fixed by
Cargo.lock, which is in the listing. Cargo target dirs (they hold a ``CACHEDIR.TAG``) and
``.git`` are not inputs.

Hashing is paid only for what changed: the stamp keeps each file's size, mtime, ctime,
inode and device (what verify's stamps key on) beside its sha256, and a file whose five
agree is not read again. So a build with nothing changed costs one ``lstat`` per file; a
``touch``, or a checkout that restores the same bytes, costs one hash of that file and no
container; an edit with its mtime put back still changes the ctime and is hashed.

After a successful build the stamp records that listing, the sha256 of each library
copied out and the fix-up's report on each; a later build whose inputs list the same, and
whose copies are all still there with those bytes, needs no container at all, and says
what the build that made those copies said (the fix-up is not run again on bytes it made).
The stamp lives in the target dir, so removing the target dir removes it.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from tasks.atomic import read_stamp, write_atomic
from tasks.memo import tree
from tasks.store import identity, sha256_file

if TYPE_CHECKING:
    from tasks.elf.fixup import FixupReport

STAMP = ".compatbuild-build.json"


Table = dict[str, list[object]]  # path -> [size, mtime_ns, ctime_ns, inode, device, sha256]


def source_paths(folders: Sequence[Path], *, exclude: Sequence[Path] = ()) -> list[Path]:
    """Every folder and file under ``folders`` that is a build input: not cargo target dirs
    (they hold a ``CACHEDIR.TAG``), not ``.git``, nothing under ``exclude``."""
    skip = {str(p) for p in exclude}
    return tree(folders, lambda here, files: "CACHEDIR.TAG" in files or here in skip)


def listing(folders: Sequence[Path], *, exclude: Sequence[Path] = (), known: Mapping[str, object] | None = None
            ) -> tuple[str, Table]:
    """A digest of (path, sha256) of every file under ``folders`` (:func:`source_paths`); and its table.

    A file whose stat matches its row in ``known`` (the last stamp's table) keeps that
    row's sha256 unread.
    """
    h = hashlib.sha256()
    known = known or {}
    table: Table = {}
    for entry in source_paths(folders, exclude=exclude):
        path = str(entry)
        try:
            st = os.lstat(path)
            if stat.S_ISDIR(st.st_mode):
                continue
            key: list[object] = list(identity(st))
            row = known.get(path)
            if isinstance(row, list) and len(row) == 6 and row[:5] == key and isinstance(row[5], str):
                digest = row[5]
            elif stat.S_ISLNK(st.st_mode):
                digest = "link:" + os.readlink(path)
            else:
                digest = sha256_file(Path(path))
        except (FileNotFoundError, IsADirectoryError):
            continue
        table[path] = [*key, digest]
        h.update(f"{path}\0{digest}\n".encode())
    return h.hexdigest(), table


def known_files(target: Path) -> dict[str, object]:
    """The file table of the last stamp in ``target`` (empty when there is none)."""
    stamp = read_stamp(target, STAMP)
    files = stamp.get("files") if isinstance(stamp, dict) else None
    return files if isinstance(files, dict) else {}


class Check(NamedTuple):
    """What decides whether one build would change nothing: the build container's image and
    command, its source folders (less ``exclude``), where its copies go and whether they are
    fixed up, and its target dir (which holds the stamp)."""

    image: str
    command: tuple[str, ...]
    folders: tuple[Path, ...]
    out_dir: Path
    exclude: tuple[Path, ...]
    target: Path
    fix_weak: bool


def material(check: Check) -> tuple[dict[str, object], Table]:
    """Everything the build container's result depends on, and where its copies go; and the file table.

    The last stamp's table (in the target dir) spares re-hashing.
    """
    digest, table = listing(check.folders, exclude=check.exclude, known=known_files(check.target))
    return {"image": check.image, "command": list(check.command), "out": str(check.out_dir), "sources": digest,
            "fix_weak": check.fix_weak}, table


class Stamped(NamedTuple):
    """The stamped build's copies, and what the weak-version fix-up did to each (empty when it was off)."""

    libraries: tuple[Path, ...]
    fixups: tuple[FixupReport, ...]


def fresh_outputs(target: Path, wanted: dict[str, object]) -> Stamped | None:
    """The stamped build when its inputs equal ``wanted`` and its copies are intact."""
    stamp = read_stamp(target, STAMP)
    if not isinstance(stamp, dict) or stamp.get("inputs") != json.loads(json.dumps(wanted)):
        return None
    outputs, fixups = stamp.get("outputs"), stamp.get("fixups")
    if not isinstance(outputs, list) or not outputs or not isinstance(fixups, list):
        return None
    found = []
    for entry in outputs:
        if not (isinstance(entry, list) and len(entry) == 2):
            return None
        p = Path(str(entry[0]))
        if not p.is_file() or sha256_file(p) != entry[1]:
            return None
        found.append(p)
    from tasks.elf.fixup import FixupReport  # only on a hit: an edited build's head start stays light

    try:
        reports = tuple(FixupReport.from_dict(f) for f in fixups)
    except (KeyError, TypeError, ValueError):
        return None
    return Stamped(tuple(found), reports)


def record(target: Path, inputs: dict[str, object], libraries: Sequence[Path], files: Table | None = None,
           fixups: Sequence[FixupReport] = ()) -> None:
    """Stamp a successful build: its inputs, the sha256 of each library copied out, the file table,
    and the fix-up's report on each copy (a build that finds them fresh says what that build did)."""
    stamp = {"inputs": inputs, "outputs": [[str(p), sha256_file(p)] for p in libraries], "files": files or {},
             "fixups": [f.to_dict() for f in fixups]}
    write_atomic(target / STAMP, (json.dumps(stamp, sort_keys=True) + "\n").encode())
