"""tasks.backends.zigtools on a small wheel made here: the install is re-checked on every use.

A file of the install edited in place, same size, with its mtime put back (``os.utime``) is
not taken as unchanged: the manifest keys each file as verify's stamps do (size, mtime,
ctime, inode, device), so the edit changes the ctime and the file is hashed again.
"""

from __future__ import annotations

import base64
import hashlib
import os
import zipfile
from pathlib import Path

import pytest

from tasks.backends import zigtools
from tasks.errors import ZigError
from tasks.inputs.lockfile import Artifact
from tasks.store import Store, sha256_file

SCRIPT = b"#!/bin/sh\necho the real cargo-zigbuild\n" + b"#" * 4000 + b"\n"


def _record(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def wheel(tmp_path: Path) -> Path:
    """A wheel shaped like cargo-zigbuild's: one script in .data/scripts, a RECORD."""
    path = tmp_path / "cargo_zigbuild-0.1-py3-none-any.whl"
    script = "cargo_zigbuild-0.1.data/scripts/cargo-zigbuild"
    with zipfile.ZipFile(path, "w") as z:
        info = zipfile.ZipInfo(script)
        info.external_attr = 0o755 << 16
        z.writestr(info, SCRIPT)
        z.writestr("cargo_zigbuild-0.1.dist-info/RECORD",
                   f"{script},{_record(SCRIPT)},{len(SCRIPT)}\ncargo_zigbuild-0.1.dist-info/RECORD,,\n")
    return path


@pytest.fixture
def installed(tmp_path: Path) -> tuple[Artifact, Store, Path, Path]:
    whl = wheel(tmp_path)
    store = Store(tmp_path / "store")
    sha = sha256_file(whl)
    store.path(sha).parent.mkdir(parents=True)
    store.path(sha).write_bytes(whl.read_bytes())
    artifact = Artifact("cargo-zigbuild", f"https://files.invalid/{whl.name}", sha, whl.name)
    root = zigtools.install_wheel(artifact, store, tmp_path / "cache", log=lambda _: None)
    [exe] = root.glob("*.data/scripts/cargo-zigbuild")
    return artifact, store, root, exe


def test_a_same_size_replacement_with_its_mtime_put_back_is_found(
        installed: tuple[Artifact, Store, Path, Path]) -> None:
    artifact, store, root, exe = installed
    before = exe.stat()
    evil = b"#!/bin/sh\necho not the pinned tool\n"
    exe.write_bytes(evil + b"#" * (len(SCRIPT) - len(evil)))
    os.utime(exe, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert (exe.stat().st_size, exe.stat().st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    with pytest.raises(ZigError, match="corrupt: .*cargo-zigbuild has sha256") as err:
        zigtools.install_wheel(artifact, store, root.parent.parent, log=lambda _: None)
    assert err.value.exit_code == 35


def test_a_file_replaced_by_a_same_size_copy_with_its_times_is_found(
        installed: tuple[Artifact, Store, Path, Path]) -> None:
    """A new file (another inode) moved over the old one, its mtime set to the old one's."""
    _artifact, _store, root, exe = installed
    before = exe.stat()
    other = exe.with_name("other")
    other.write_bytes(b"x" * len(SCRIPT))
    os.utime(other, ns=(before.st_atime_ns, before.st_mtime_ns))
    os.replace(other, exe)
    with pytest.raises(ZigError, match="corrupt"):
        zigtools.check_install(root)


def test_an_untouched_install_is_checked_by_stat_alone(
        installed: tuple[Artifact, Store, Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    _artifact, _store, root, exe = installed

    real_open = Path.open

    def no_hash(self: Path, *a: object, **k: object) -> object:
        assert self.name != exe.name, "a file was hashed again"
        return real_open(self, *a, **k)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "open", no_hash)
    zigtools.check_install(root)
