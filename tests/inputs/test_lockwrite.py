"""tasks.inputs.lockwrite: the one lockfile writer — its lock, its comments, its mode.

`invoke lock` and `invoke rpms --refresh` both write through it; the tests that they do
(they wait for the lockfile's lock) are in test_pins.py and test_rpms.py.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import tomlkit

from tasks.atomic import lock_for
from tasks.errors import LockfileError
from tasks.inputs.lockfile import load
from tasks.inputs.lockwrite import rewrite
from tasks.settings import PROJECT_ROOT

HEAD = """# top comment: kept
schema = 1
[target]
name = "t"   # trailing comment: kept
glibc = "2.18"
[base]
image = "x/y:1"
id = "sha256:%s"
""" % ("0" * 64)


def key_tables(n: int) -> str:
    return "".join(f'\n# key {i}: kept\n[[key]]\nname = "k{i}"\nurl = "https://k.invalid/{i}.asc"\n'
                   f'fingerprints = ["{"A" * 40}"]\n' for i in range(n))


def pin_key(name: str, sha: str, *, pause: float = 0.0):  # type: ignore[no-untyped-def]
    def edit(doc: tomlkit.TOMLDocument) -> None:
        for table in doc["key"]:  # type: ignore[union-attr]
            if table["name"] == name:
                time.sleep(pause)  # read, then think: a writer without the lock loses edits
                table["sha256"] = sha
    return edit


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_an_edit_keeps_every_comment_and_changes_one_line(tmp_path: Path) -> None:
    path = tmp_path / "rsrc.lock.toml"
    path.write_text(HEAD + key_tables(2))
    before = path.read_text()
    assert rewrite(path, pin_key("k1", "b" * 64)) is True
    after = path.read_text()
    assert after == before + f'sha256 = "{"b" * 64}"\n'
    assert load(path).key("k1").sha256 == "b" * 64


def test_the_file_mode_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "rsrc.lock.toml"
    path.write_text(HEAD + key_tables(1))
    path.chmod(0o600)
    old_umask = os.umask(0o022)
    try:
        rewrite(path, pin_key("k0", "c" * 64))
    finally:
        os.umask(old_umask)
    assert load(path).key("k0").sha256 == "c" * 64
    assert mode(path) == 0o600
    path.chmod(0o664)  # and a wider one is not narrowed either
    rewrite(path, pin_key("k0", "d" * 64))
    assert mode(path) == 0o664


def test_an_edit_that_changes_nothing_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "rsrc.lock.toml"
    path.write_text(HEAD + key_tables(1))
    stamp = path.stat().st_mtime_ns
    time.sleep(0.01)
    assert rewrite(path, lambda _doc: None) is False
    assert path.stat().st_mtime_ns == stamp


def test_an_edit_load_would_reject_is_refused_and_the_file_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "rsrc.lock.toml"
    path.write_text(HEAD + key_tables(1))
    before = path.read_text()
    with pytest.raises(LockfileError, match=r"refusing to write rsrc.lock.toml: .*sha256") as err:
        rewrite(path, pin_key("k0", "not-a-hash"))
    assert "\n" not in str(err.value) and path.read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [".rsrc.lock.toml.lock", "rsrc.lock.toml"]


def test_a_symlinked_lockfile_stays_a_symlink(tmp_path: Path) -> None:
    real = tmp_path / "shared" / "lock.toml"
    real.parent.mkdir()
    real.write_text(HEAD + key_tables(1))
    link = tmp_path / "rsrc.lock.toml"
    link.symlink_to(real)
    rewrite(link, pin_key("k0", "e" * 64))
    assert link.is_symlink() and load(real).key("k0").sha256 == "e" * 64


def test_a_writer_waits_for_the_lock_then_edits_the_file_as_it_is_then(tmp_path: Path) -> None:
    path = tmp_path / "rsrc.lock.toml"
    path.write_text(HEAD + key_tables(2))
    done = threading.Event()
    with lock_for(path):
        worker = threading.Thread(target=lambda: (rewrite(path, pin_key("k0", "a" * 64)), done.set()))
        worker.start()
        time.sleep(0.3)
        assert not done.is_set()  # blocked on .rsrc.lock.toml.lock
        path.write_text(path.read_text().replace('name = "k1"', f'name = "k1"\nsha256 = "{"f" * 64}"'))
    worker.join(timeout=10)
    assert done.is_set()
    lf = load(path)
    assert (lf.key("k0").sha256, lf.key("k1").sha256) == ("a" * 64, "f" * 64)


WRITER = """
import sys, time
from pathlib import Path
from tasks.inputs.lockwrite import rewrite
path, name, sha, go = Path(sys.argv[1]), sys.argv[2], sys.argv[3], Path(sys.argv[4])
while not go.exists():
    time.sleep(0.005)
def edit(doc):
    for table in doc["key"]:
        if table["name"] == name:
            time.sleep(0.2)
            table["sha256"] = sha
rewrite(path, edit)
"""


def test_concurrent_writers_in_other_processes_lose_no_edit(tmp_path: Path) -> None:
    path, go = tmp_path / "rsrc.lock.toml", tmp_path / "go"
    path.write_text(HEAD + key_tables(4))
    shas = {f"k{i}": f"{i}" * 64 for i in range(4)}
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), name, sha, str(go)],  # noqa: S603
                              cwd=PROJECT_ROOT, stderr=subprocess.PIPE, text=True)
             for name, sha in shas.items()]
    time.sleep(0.5)  # let all four start and import before the race begins
    go.touch()
    errors = [p.communicate(timeout=60)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, errors
    lf = load(path)
    assert {k.name: k.sha256 for k in lf.keys} == shas
    assert path.read_text().count(": kept") == 6  # every comment survived every writer
