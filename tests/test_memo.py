"""A task run's memo (tasks/memo.py): replayed only while everything it depended on is unchanged."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from tasks import memo
from tasks.builder import stages
from tasks.builder.docker_client import Docker
from tasks.inputs import lockfile


def _recorded(tmp_path: Path, watch: memo.Watch, value: object = ("built", 1), *, key: str = "a") -> memo.Run:
    time.sleep(memo.RACY_NS / 1e9 + 0.01)  # the inputs were written before the run started
    run = memo.Run(tmp_path / "cache", "build", {"crate": key})
    run.say(1)("Built libx.so")
    run.say(2)("a note")
    run.save(watch, value)
    return run


@pytest.fixture()
def crate(tmp_path: Path) -> Path:
    src = tmp_path / "crate" / "src"
    src.mkdir(parents=True)
    (src / "lib.rs").write_text("pub fn f() {}\n")
    (tmp_path / "crate" / "Cargo.toml").write_text("[package]\nname = 'x'\n")
    time.sleep(memo.RACY_NS / 1e9 + 0.01)
    return tmp_path / "crate"


def _again(tmp_path: Path, key: str = "a") -> memo.Hit | None:
    return memo.replay(memo.Run(tmp_path / "cache", "build", {"crate": key}))


def test_an_unchanged_run_replays_what_it_said_and_returned(tmp_path: Path, crate: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    _recorded(tmp_path, memo.Watch(inputs=tuple(memo.tree([crate]))))
    capsys.readouterr()
    hit = _again(tmp_path)
    assert hit is not None
    assert memo.play(hit) == ("built", 1)
    out, err = capsys.readouterr()
    assert (out, err) == ("Built libx.so\n", "a note\n")
    assert _again(tmp_path, key="other crate") is None  # another key: nothing recorded


def test_an_edit_a_new_file_or_a_removed_one_is_a_miss(tmp_path: Path, crate: Path) -> None:
    for change in (lambda: (crate / "src" / "lib.rs").write_text("pub fn g() {}\n"),
                   lambda: (crate / "src" / "new.rs").write_text(""),
                   lambda: (crate / "src" / "new.rs").unlink(),
                   lambda: os.utime(crate / "Cargo.toml")):  # a touch: the whole run decides (it hashes)
        _recorded(tmp_path, memo.Watch(inputs=tuple(memo.tree([crate]))))
        assert _again(tmp_path) is not None
        change()
        assert _again(tmp_path) is None


def test_a_target_dir_and_git_are_not_inputs(tmp_path: Path, crate: Path) -> None:
    (crate / "target").mkdir()
    (crate / "target" / "CACHEDIR.TAG").write_text("Signature: 8a477f597d28d172789f06886806bc55\n")
    (crate / ".git").mkdir()
    time.sleep(memo.RACY_NS / 1e9 + 0.01)
    _recorded(tmp_path, memo.Watch(inputs=tuple(memo.tree([crate], lambda here, files: "CACHEDIR.TAG" in files))))
    (crate / "target" / "libx.so").write_text("out")
    (crate / ".git" / "index").write_text("i")
    assert _again(tmp_path) is not None


def test_an_absent_input_that_appears_is_a_miss(tmp_path: Path) -> None:
    _recorded(tmp_path, memo.Watch(inputs=(tmp_path / "rust-toolchain.toml",)))
    assert _again(tmp_path) is not None
    (tmp_path / "rust-toolchain.toml").write_text("[toolchain]\nchannel = 'nightly'\n")
    assert _again(tmp_path) is None


def test_an_input_changed_while_the_run_read_it_is_not_recorded(tmp_path: Path, crate: Path) -> None:
    run = memo.Run(tmp_path / "cache", "build", {"crate": "a"})
    (crate / "src" / "lib.rs").write_text("pub fn late() {}\n")  # edited after the run started
    run.save(memo.Watch(inputs=tuple(memo.tree([crate]))), "value")
    assert not run.path.exists()
    assert _again(tmp_path) is None


def test_an_output_changed_or_removed_is_a_miss(tmp_path: Path) -> None:
    lib = tmp_path / "out" / "libx.so"
    lib.parent.mkdir()
    lib.write_bytes(b"\x7fELF")
    _recorded(tmp_path, memo.Watch(outputs=(lib,)))
    assert _again(tmp_path) is not None
    lib.write_bytes(b"\x7fELF2")
    assert _again(tmp_path) is None


def test_an_environment_variable_set_changed_or_a_new_one_of_a_prefix_is_a_miss(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RUSTFLAGS", raising=False)
    for var in [k for k in os.environ if k.startswith("CARGO_")]:
        monkeypatch.delenv(var)
    _recorded(tmp_path, memo.Watch(env=("RUSTFLAGS", "CARGO_*")))
    assert _again(tmp_path) is not None
    monkeypatch.setenv("CARGO_PROFILE_RELEASE_LTO", "true")
    assert _again(tmp_path) is None
    monkeypatch.delenv("CARGO_PROFILE_RELEASE_LTO")
    monkeypatch.setenv("RUSTFLAGS", "-C target-cpu=native")
    assert _again(tmp_path) is None


def test_a_damaged_or_half_written_record_is_a_miss(tmp_path: Path) -> None:
    run = _recorded(tmp_path, memo.Watch())
    for damage in (b"", b"{", json.dumps({"inputs": {}}).encode(), b"\x00" * 10):
        run.path.write_bytes(damage)
        assert _again(tmp_path) is None


def test_an_image_is_checked_by_its_id_on_the_local_daemon(tmp_path: Path, docker_client: Docker,
                                                           profile_lock: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tags = [stages.base_tag(lockfile.load(profile_lock))]  # the profile's base, imported into the daemon
    assert memo.image_id(tags[0]) == docker_client.client.images.get(tags[0]).id
    assert memo.image_id("compatbuild/no-such-stage:0") is None
    _recorded(tmp_path, memo.Watch(images=(tags[0],)))
    assert _again(tmp_path) is not None
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:9")  # another daemon: not asked here, a miss
    assert memo.image_id(tags[0]) is None
    assert _again(tmp_path) is None


def test_a_missing_image_is_never_recorded(tmp_path: Path) -> None:
    run = _recorded(tmp_path, memo.Watch(images=("compatbuild/no-such-stage:0",)))
    assert not run.path.exists()
