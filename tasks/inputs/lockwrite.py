"""The one way compatbuild writes the lockfile: under its lock, comments and mode kept.

``invoke lock`` (key hashes, the Rust pin) and ``invoke rpms --refresh`` (the ``[[rpm]]``
tables) both edit through :func:`rewrite`:

lock (``.<name>.lock`` beside the file, so processes editing it take turns) → re-read the
file as it is now (an edit another process made while we waited is kept) → apply the edit
to the tomlkit document (comments and layout survive) → refuse a result ``load()`` would
reject → write an adjacent temporary, created with the file's own mode (a 0600 lockfile
stays 0600) → ``os.replace`` (:func:`tasks.atomic.staged`). An edit that changes nothing
writes nothing.
"""

from __future__ import annotations

import os
import stat
import tomllib
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING

from tasks.atomic import lock_for, staged
from tasks.errors import LockfileError
from tasks.inputs.lockfile import load, parse

if TYPE_CHECKING:  # tomlkit is imported where it is used; Edit is an annotation only
    import tomlkit

    Edit = Callable[[tomlkit.TOMLDocument], None]


def rewrite(lock_path: Path, edit: Edit) -> bool:
    """Apply ``edit`` to the lockfile as it is under its lock; True when the file changed."""
    import tomlkit

    path = lock_path.resolve()  # a symlinked lockfile: edit its target, keep the link
    with ExitStack() as stack:
        try:
            stack.enter_context(lock_for(path))
        except OSError as exc:
            raise LockfileError(f"{lock_path}: cannot lock lockfile: {exc.strerror or exc}") from None
        load(path)  # refuse to edit a lockfile that is already broken (its one-line error)
        try:
            before = path.read_text(encoding="utf-8")
            mode = stat.S_IMODE(path.stat().st_mode)
        except OSError as exc:
            raise LockfileError(f"{lock_path}: cannot read lockfile: {exc.strerror or exc}") from None
        bom = "\ufeff" if before.startswith("\ufeff") else ""  # load() accepts one: keep it as it was
        doc = tomlkit.parse(before.removeprefix(bom))
        edit(doc)
        text = bom + tomlkit.dumps(doc)
        if text == before:
            return False
        try:
            parse(tomllib.loads(text.removeprefix(bom)), path)
        except (LockfileError, tomllib.TOMLDecodeError) as exc:
            raise LockfileError(f"refusing to write {lock_path.name}: {exc}") from None
        try:
            _write(path, text.encode("utf-8"), mode)
        except OSError as exc:
            raise LockfileError(f"{lock_path}: cannot write lockfile: {exc.strerror or exc}") from None
        return True
    raise AssertionError("unreachable")  # for mypy: an ExitStack could swallow exceptions


def _write(path: Path, data: bytes, mode: int) -> None:
    """Through an adjacent temporary made with ``mode`` from the start: never wider, even briefly."""
    with staged(path, mode=mode) as tmp:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
