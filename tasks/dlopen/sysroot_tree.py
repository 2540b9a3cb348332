"""Write archive members under a root as if chrooted there: nothing can lead outside it.

Every member name and every link target is resolved component by component *inside* the
root, following the links already written as the root's own (an absolute target starts at
the root, ``..`` at the root stays there), never the host's. So ``a/b -> /`` followed by
``a/b/a/b/…/usr -> /usr`` writes ``usr`` at the root pointing at the root's ``usr``, not
the host's. Links are written relative to the folder they physically live in, so the
host's own loader, following them from outside any chroot, stays inside too.

What one archive may write is bounded (:meth:`Tree.budget`): UNPACK_RATIO times the
archive's own size, at least UNPACK_FLOOR, each member costing MEMBER_COST on top of its
bytes, so a small package that inflates to gigabytes (a decompression bomb) is one
:class:`~tasks.errors.SysrootError` after at most that many bytes, not a full disk.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO

from tasks.errors import SysrootError

MAX_LINKS = 40  # as the kernel's ELOOP limit
CHUNK = 1 << 20  # bytes copied at a time
UNPACK_RATIO = 64  # an archive may unpack to 64 x its size (glibc's packages: under 10 x) ...
UNPACK_FLOOR = 16 << 20  # ... and at least 16 MiB, whatever its size
MEMBER_COST = 512  # bytes charged per member besides its data: a million empty files is a bomb too


def parts_of(name: str) -> list[str]:
    """A member name's components, without empty and ``.`` ones (``./.dot/l`` -> .dot, l)."""
    return [p for p in name.replace("\\", "/").split("/") if p not in ("", ".")]


class Tree:
    """Writes archive members under ``root``: never outside it, absolute links made relative."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.left: int | None = None  # bytes the current archive may still write; None: unbounded
        self.bound = ""  # the refusal, said when ``left`` runs out

    def budget(self, archive_bytes: int, label: str) -> None:
        """Bound what the next members (one archive of ``archive_bytes``) may write."""
        cap = max(UNPACK_RATIO * archive_bytes, UNPACK_FLOOR)
        self.left = cap
        self.bound = (f"{label}: unpacks to more than {cap} bytes ({UNPACK_RATIO} x its {archive_bytes} "
                      f"bytes, at least {UNPACK_FLOOR}); refused, and nothing of it kept")

    def _spend(self, n: int) -> None:
        if self.left is not None:
            self.left -= n
            if self.left < 0:
                raise SysrootError(self.bound)

    def resolve(self, parts: list[str], *, follow_last: bool, what: str) -> list[str]:
        """``parts`` as a link-free path below the root, links read inside the root.

        Components that do not exist yet are kept as they are; the last one is followed
        only when ``follow_last``. Raises SysrootError after MAX_LINKS links (a loop).
        """
        out: list[str] = []
        todo = list(parts)
        hops = 0
        while todo:
            p = todo.pop(0)
            if p in ("", "."):
                continue
            if p == "..":
                if out:
                    out.pop()
                continue
            here = self.root.joinpath(*out, p)  # out holds no links: lstat reads inside the root
            if (todo or follow_last) and here.is_symlink():
                hops += 1
                if hops > MAX_LINKS:
                    raise SysrootError(f"{what}: too many levels of links inside the sysroot")
                target = os.readlink(here)
                if target.startswith("/"):
                    out = []
                todo = target.split("/") + todo
                continue
            out.append(p)
        return out

    def _place(self, name: str) -> Path:
        """Where member ``name`` lives: its folder resolved inside the root, made if missing."""
        self._spend(MEMBER_COST)
        parts = parts_of(name)
        if ".." in parts:
            raise SysrootError(f"archive member {name!r} points outside the sysroot")
        if not parts:
            return self.root
        folder = self.resolve(parts[:-1], follow_last=True, what=f"archive member {name!r}")
        parent = self.root.joinpath(*folder)
        parent.mkdir(parents=True, exist_ok=True)
        return parent / parts[-1]

    def directory(self, name: str) -> None:
        path = self._place(name)
        if path.is_symlink():  # a usrmerge-style link already stands here
            return
        path.mkdir(exist_ok=True)

    def file(self, name: str, data: IO[bytes], mode: int) -> None:
        path = self._place(name)
        if path == self.root:
            raise SysrootError(f"archive member {name!r} is a file at the sysroot's root")
        if path.is_symlink() or path.exists():
            path.unlink()
        with path.open("wb") as out:
            while chunk := data.read(CHUNK):
                self._spend(len(chunk))
                out.write(chunk)
        path.chmod((mode & 0o777) | 0o200)

    def symlink(self, name: str, target: str) -> None:
        path = self._place(name)
        if path == self.root:
            raise SysrootError(f"archive link {name!r} would replace the sysroot's root")
        folder = path.parent.relative_to(self.root).parts
        # Where the link points, inside the root: from the root for an absolute target,
        # else from the folder the link really lives in (not the one its name spells).
        start = [] if target.startswith("/") else list(folder)
        inside = self.resolve(start + target.split("/"), follow_last=False,
                              what=f"archive link {name!r} -> {target!r}")
        rel = os.path.relpath(self.root.joinpath(*inside), path.parent)
        if path.is_symlink() or path.is_file():
            path.unlink()
        elif path.is_dir():
            return
        os.symlink(rel, path)

    def hardlink(self, name: str, existing: str) -> None:
        src_parts = parts_of(existing)
        if ".." in src_parts:
            raise SysrootError(f"archive hard link {name!r} -> {existing!r} points outside the sysroot")
        source = self.root.joinpath(*self.resolve(src_parts, follow_last=False,
                                                  what=f"archive hard link {name!r}"))
        if source.is_symlink():
            raise SysrootError(f"archive hard link {name!r} -> {existing!r} names a symlink")
        if not source.is_file():
            raise SysrootError(f"archive hard link {name!r} -> {existing!r} names no file")
        path = self._place(name)
        if path.is_symlink() or path.exists():
            path.unlink()
        os.link(source, path, follow_symlinks=False)
