"""Whether a build would change nothing: the inputs of the build container, stamped.

The build container sees only its image, its command and its mounts, so those are its
inputs: the image tag (a digest of the toolchain's inputs), the cargo command, and every
file under the mounted source folders (the workspace and the path packages outside it),
listed by path, size and modification time — the same evidence cargo's own freshness
check uses. The registry in the cargo home is fixed by Cargo.lock, which is in the
listing. Cargo target dirs (they hold a ``CACHEDIR.TAG``) and ``.git`` are not inputs.

After a successful build the stamp records that listing and the sha256 of each library
copied out; a later build whose inputs list the same, and whose copies are all still
there with those bytes, needs no container at all. The stamp lives in the target dir, so
removing the target dir removes it.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path

from tasks.atomic import read_stamp, write_atomic
from tasks.store import sha256_file

STAMP = ".compatbuild-build.json"
SKIP_DIRS = (".git",)


def listing(folders: Sequence[Path], *, exclude: Sequence[Path] = ()) -> str:
    """A digest of (path, size, mtime) of every file under ``folders``, minus target dirs."""
    h = hashlib.sha256()
    skip = {str(p) for p in exclude}
    for top in folders:
        for here, dirs, files in os.walk(top):
            if "CACHEDIR.TAG" in files and here != str(top):
                dirs[:] = []  # a cargo target dir: outputs, not inputs
                continue
            dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and os.path.join(here, d) not in skip)
            for name in sorted(files):
                path = os.path.join(here, name)
                try:
                    st = os.lstat(path)
                except FileNotFoundError:
                    continue
                h.update(f"{path}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def material(image: str, command: Sequence[str], folders: Sequence[Path], out_dir: Path,
             *, exclude: Sequence[Path] = ()) -> dict[str, object]:
    """Everything the build container's result depends on, and where its copies go."""
    return {"image": image, "command": list(command), "out": str(out_dir),
            "sources": listing(folders, exclude=exclude)}


def fresh_outputs(target: Path, wanted: dict[str, object]) -> tuple[Path, ...] | None:
    """The libraries of the stamped build when its inputs equal ``wanted`` and its copies are intact."""
    stamp = read_stamp(target, STAMP)
    if not isinstance(stamp, dict) or stamp.get("inputs") != json.loads(json.dumps(wanted)):
        return None
    outputs = stamp.get("outputs")
    if not isinstance(outputs, list) or not outputs:
        return None
    found = []
    for entry in outputs:
        if not (isinstance(entry, list) and len(entry) == 2):
            return None
        p = Path(str(entry[0]))
        if not p.is_file() or sha256_file(p) != entry[1]:
            return None
        found.append(p)
    return tuple(found)


def record(target: Path, inputs: dict[str, object], libraries: Sequence[Path]) -> None:
    """Stamp a successful build: its inputs and the sha256 of each library copied out."""
    stamp = {"inputs": inputs, "outputs": [[str(p), sha256_file(p)] for p in libraries]}
    write_atomic(target / STAMP, (json.dumps(stamp, sort_keys=True) + "\n").encode())
