"""The one way compatbuild writes an output: lock → check → adjacent temporary → verify → replace.

Every cached or published thing — store entries, stamps, build outputs, the smoke harness,
sysroots, the test profile's files — goes through here, so nothing half-written is ever
taken for a good output:

- :func:`staged` yields a temporary beside ``dest`` (same folder, so ``os.replace`` is
  atomic); when the block succeeds the temporary replaces ``dest``, and whatever happens
  the temporary is gone afterwards (a half-made directory included).
- :func:`ensure_file` and :func:`ensure_dir` add the cross-process lock and the check: they
  return ``False`` at once, saying nothing, when the output is already good.
- A directory output carries a stamp file naming its inputs. That stamp is also how
  compatbuild knows the directory is its own: an existing directory without one is never
  replaced or removed (:class:`~tasks.errors.OutputError`).
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from tasks.errors import OutputError

if TYPE_CHECKING:
    import filelock

STAMP = ".compatbuild.json"


def _temp_name(dest: Path, suffix: str) -> Path:
    return dest.with_name(f".{dest.name}.{os.getpid()}.{threading.get_ident()}.{suffix}")


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this machine (another user's counts): the owner check of lock
    files here, of containers (:mod:`tasks.builder.docker_client`) and warm-runner requests."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_stale(dest: Path) -> list[Path]:
    """Remove the temporaries of ``dest`` left by a process that died (kill -9) mid-write.

    Only names this module makes (``.<name>.<pid>.<thread>.part|old``) whose pid is no
    longer running are removed: never another live process's, never anything else.
    """
    removed: list[Path] = []
    prefix = f".{dest.name}."
    try:
        siblings = list(dest.parent.iterdir())
    except OSError:
        return removed
    for p in siblings:
        rest = p.name[len(prefix):] if p.name.startswith(prefix) else ""
        parts = rest.split(".")
        if len(parts) == 3 and parts[2] in ("part", "old") and parts[0].isdigit() and parts[1].isdigit():
            if int(parts[0]) != os.getpid() and not pid_alive(int(parts[0])):
                _remove(p)
                removed.append(p)
    return removed


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def read_stamp(folder: Path, name: str = STAMP) -> object | None:
    """The stamp a directory output carries, or None when it has none (not ours, or half-made)."""
    try:
        stamp: object = json.loads((folder / name).read_text())
    except (OSError, ValueError):
        return None
    return stamp


@contextmanager
def lock_for(dest: Path) -> Iterator[None]:
    """The cross-process lock of one output: ``.<name>.lock`` beside it."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(dest.with_name(f".{dest.name}.lock")):
        yield


def file_lock(path: Path) -> filelock.BaseFileLock:
    """The one lock primitive: a cross-process lock on the file ``path``, not yet held.

    Every lock compatbuild takes (an output's, a store entry's, a stage's) is one of these;
    ``with`` holds it, ``.acquire(timeout=...)`` waits a bounded time.
    """
    import filelock  # here, not at import: a replayed run (tasks/memo.py) takes no lock

    return filelock.FileLock(str(path))


@contextmanager
def staged(dest: Path, *, directory: bool = False, owned: Callable[[Path], bool] | None = None,
           mode: int | None = None) -> Iterator[Path]:
    """Yield a temporary beside ``dest``; on success it replaces ``dest``, and it never outlives the block.

    A directory ``dest`` that exists is replaced only when ``owned(dest)`` says compatbuild
    made it; otherwise OutputError, and nothing is touched. ``mode`` is applied to a file
    before it becomes visible under its name.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale(dest)
    tmp = _temp_name(dest, "part")
    _remove(tmp)
    if directory:
        tmp.mkdir()
    try:
        yield tmp
        if mode is not None and not directory:
            tmp.chmod(mode)
        if directory and dest.exists():
            if dest.is_symlink() or not dest.is_dir() or owned is None or not owned(dest):
                raise OutputError(f"{dest} exists and was not made by compatbuild; "
                                  "refusing to replace it (remove it yourself or choose another path)")
            old = _temp_name(dest, "old")
            os.replace(dest, old)
            os.replace(tmp, dest)
            _remove(old)
        else:
            os.replace(tmp, dest)
    finally:
        _remove(tmp)


def ensure_file(dest: Path, write: Callable[[Path], None], *,
                valid: Callable[[Path], bool] = Path.is_file, mode: int | None = None) -> bool:
    """Make ``dest`` with ``write(tmp)`` unless ``valid(dest)``; True when it was made now."""
    if valid(dest):
        return False
    with lock_for(dest):
        if valid(dest):  # another process made it while we waited
            return False
        with staged(dest, mode=mode) as tmp:
            write(tmp)
    return True


def ensure_dir(dest: Path, stamp: Mapping[str, object], fill: Callable[[Path], None], *,
               stamp_name: str = STAMP, before: Callable[[], None] | None = None) -> bool:
    """Make directory ``dest`` with ``fill(tmp)`` unless its stamp already equals ``stamp``.

    True when it was (re)made now. ``before`` runs once it is known that work is needed
    (to announce it). An existing ``dest`` without a stamp is not compatbuild's: refused.
    """
    wanted = json.loads(json.dumps(stamp, sort_keys=True))
    if read_stamp(dest, stamp_name) == wanted:
        return False
    with lock_for(dest):
        if read_stamp(dest, stamp_name) == wanted:
            return False
        if dest.exists() and read_stamp(dest, stamp_name) is None:
            raise OutputError(f"{dest} exists and was not made by compatbuild (no {stamp_name} in it); "
                              "refusing to replace it (remove it yourself or choose another path)")
        if before is not None:
            before()
        with staged(dest, directory=True, owned=lambda d: read_stamp(d, stamp_name) is not None) as tmp:
            fill(tmp)
            (tmp / stamp_name).write_text(json.dumps(wanted, sort_keys=True))
    return True


def write_atomic(path: Path, data: bytes, *, mode: int | None = None) -> None:
    """Write ``data`` to ``path`` through an adjacent temporary and ``os.replace``."""
    with staged(path, mode=mode) as tmp:
        with tmp.open("wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())


def copy_atomic(src: Path, dest: Path, *, mode: int | None = None) -> Path:
    """Copy ``src`` to ``dest`` through an adjacent temporary; return ``dest``."""
    with staged(dest, mode=mode) as tmp:
        shutil.copyfile(src, tmp)
    return dest
