"""The zig backend's tools when they cannot run: the one-line error names the file.

A zig in the cache that lost its execute bit has the bytes its wheel recorded, so the install
check passes it; cargo-zigbuild then fails to run it and says only "Failed to find zig" (and,
under RUST_BACKTRACE=1, a backtrace whose last line, "13: <unknown>", was all the error showed).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tasks.backends import zigtools
from tasks.backends.fetch import cargo_error
from tasks.errors import ZigError
from tasks.inputs import lockfile
from tasks.inputs.lockfile import Artifact
from tasks.settings import PROJECT_ROOT
from tasks.store import Store

# zig's lib/libc/glibc/abilists, cut to one library ("c") and one version (2.17)
ABILISTS = bytes([1]) + b"c\0" + bytes([1, 2, 17, 0])


def fake_installs(tmp_path: Path, *, zig_mode: int) -> dict[str, Path]:
    """Installed-wheel folders as install_wheel leaves them, cargo-zigbuild executable, zig ``zig_mode``."""
    roots = {"cargo-zigbuild": tmp_path / "cargo-zigbuild-0", "ziglang": tmp_path / "ziglang-0"}
    script = roots["cargo-zigbuild"] / "cargo_zigbuild-0.24.1.data" / "scripts" / "cargo-zigbuild"
    script.parent.mkdir(parents=True)
    script.write_text("#!/bin/sh\nexit 0\n")
    script.chmod(0o755)
    zig = roots["ziglang"] / "ziglang" / "zig"
    abilists = roots["ziglang"] / "ziglang" / "lib" / "libc" / "glibc" / "abilists"
    abilists.parent.mkdir(parents=True)
    abilists.write_bytes(ABILISTS)
    zig.write_text("#!/bin/sh\nexit 0\n")
    zig.chmod(zig_mode)
    return roots


@pytest.mark.parametrize("mode", [0o644, 0o755])
def test_a_zig_that_cannot_be_executed_is_a_zig_error_naming_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: int) -> None:
    roots = fake_installs(tmp_path, zig_mode=mode)

    def installed(artifact: Artifact, store: Store, cache: Path, *, log: object = None) -> Path:
        return roots[artifact.name]

    monkeypatch.setattr(zigtools, "install_wheel", installed)
    lock = lockfile.load(PROJECT_ROOT / "rsrc.lock.toml", "centos7")
    zig = roots["ziglang"] / "ziglang" / "zig"
    if mode == 0o755:
        assert zigtools.install(lock, Store(tmp_path / "store"), tmp_path).zig == zig
        return
    with pytest.raises(ZigError) as caught:
        zigtools.install(lock, Store(tmp_path / "store"), tmp_path)
    assert str(caught.value) == (f"zig in the cache cannot be run: {zig} is not executable; "
                                 f"remove {roots['ziglang']} and run again to reinstall it")
    assert caught.value.exit_code == 35


CARGO_ZIGBUILD_FAILED = """\
Error: Failed to find zig

Caused by:
    cannot find binary path

Stack backtrace:
   0: <unknown>
   1: <unknown>
  13: <unknown>
"""


def test_cargo_zigbuilds_own_error_is_worded_not_its_backtrace() -> None:
    """cargo-zigbuild (anyhow) writes "Error:" and, under RUST_BACKTRACE=1, a backtrace after it."""
    assert cargo_error(CARGO_ZIGBUILD_FAILED, 1) == "Error: Failed to find zig (caused by: cannot find binary path)"
