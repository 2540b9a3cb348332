"""tasks.atomic: the one output primitive — nothing half-written, nothing foreign removed."""

from __future__ import annotations

from pathlib import Path

import pytest

from tasks.atomic import copy_atomic, ensure_dir, ensure_file, staged, write_atomic
from tasks.errors import OutputError


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith((".part", ".old")))


def test_a_failed_write_leaves_neither_dest_nor_temporary(tmp_path: Path) -> None:
    dest = tmp_path / "out.bin"
    with pytest.raises(RuntimeError), staged(dest) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("boom")
    assert not dest.exists()
    assert _leftovers(tmp_path) == []


def test_a_failed_directory_is_removed_and_the_old_one_kept(tmp_path: Path) -> None:
    dest = tmp_path / "tree"
    assert ensure_dir(dest, {"v": 1}, lambda d: (d / "a").write_text("one"))
    with pytest.raises(RuntimeError):
        ensure_dir(dest, {"v": 2}, lambda d: (_ for _ in ()).throw(RuntimeError("fill failed")))
    assert (dest / "a").read_text() == "one"
    assert _leftovers(tmp_path) == []


def test_ensure_dir_is_silent_and_idle_when_the_stamp_matches(tmp_path: Path) -> None:
    calls: list[Path] = []
    dest = tmp_path / "tree"
    assert ensure_dir(dest, {"v": 1}, calls.append) is True
    assert ensure_dir(dest, {"v": 1}, calls.append) is False
    assert len(calls) == 1
    assert ensure_dir(dest, {"v": 2}, calls.append) is True  # new inputs: remade
    assert len(calls) == 2


def test_a_directory_compatbuild_did_not_make_is_never_replaced(tmp_path: Path) -> None:
    project = tmp_path / "project"
    (project / "src").mkdir(parents=True)
    (project / "src" / "main.rs").write_text("fn main() {}")
    with pytest.raises(OutputError, match="not made by compatbuild"):
        ensure_dir(project, {"v": 1}, lambda d: (d / "x").write_text("x"))
    assert (project / "src" / "main.rs").read_text() == "fn main() {}"
    assert not (project / "x").exists()


def test_ensure_file_makes_once(tmp_path: Path) -> None:
    dest = tmp_path / "h"
    made: list[int] = []

    def write(tmp: Path) -> None:
        made.append(1)
        tmp.write_text("x")

    assert ensure_file(dest, write) and not ensure_file(dest, write)
    assert made == [1] and dest.read_text() == "x"


def test_write_and_copy_apply_the_mode_before_the_file_appears(tmp_path: Path) -> None:
    write_atomic(tmp_path / "secret", b"s", mode=0o600)
    assert (tmp_path / "secret").stat().st_mode & 0o777 == 0o600
    copy_atomic(tmp_path / "secret", tmp_path / "lib.so", mode=0o755)
    assert (tmp_path / "lib.so").stat().st_mode & 0o777 == 0o755
    assert _leftovers(tmp_path) == []


def test_temporaries_of_a_killed_writer_are_swept_and_a_live_ones_kept(tmp_path: Path) -> None:
    import os
    import subprocess

    dest = tmp_path / "tree"
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = tmp_path / f".tree.{dead.pid}.1.part"
    (stale / "half").mkdir(parents=True)  # what a kill -9 mid-fill leaves
    live = tmp_path / f".tree.{os.getppid()}.1.part"  # a running process's: not ours to remove
    live.mkdir()
    other = tmp_path / ".tree.notes"  # not a name this module makes
    other.write_text("keep")
    assert ensure_dir(dest, {"v": 1}, lambda d: (d / "a").write_text("x"))
    assert not stale.exists() and live.is_dir() and other.read_text() == "keep"
    assert (dest / "a").read_text() == "x"
