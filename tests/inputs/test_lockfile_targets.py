"""Schema 2: targets and the linker are first-class; one target is selected per load."""

from __future__ import annotations

from pathlib import Path

import pytest

from tasks.errors import LockfileError
from tasks.inputs import lockfile
from tasks.settings import PROJECT_ROOT

ID = "sha256:" + "1" * 64
SHA = "a" * 64

TWO_TARGETS = f"""
schema = 2
default_target = "old"
[build]
linker = "llvm"
[targets.old]
glibc = "2.18"
packages = ["gcc"]
[targets.old.base]
image = "local/old"
id = "{ID}"
[targets.older]
glibc = "2.17"
[targets.older.base]
image = "local/older"
id = "sha256:{'2' * 64}"
[[rpm]]
name = "glibc"
url = "https://example.invalid/old/glibc-2.18-1.x86_64.rpm"
sha256 = "{SHA}"
[[rpm]]
target = "older"
name = "glibc"
url = "https://example.invalid/older/glibc-2.17-1.x86_64.rpm"
sha256 = "{'b' * 64}"
"""


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "rsrc.lock.toml"
    p.write_text(text)
    return p


def test_the_default_target_is_selected_with_only_its_rpms(tmp_path: Path) -> None:
    lock = lockfile.load(_write(tmp_path, TWO_TARGETS))
    assert (lock.target.name, lock.target.glibc, lock.base.image) == ("old", "2.18", "local/old")
    assert lock.targets == ("old", "older") and lock.linker == "llvm"
    assert [r.url.rsplit("/", 2)[1] for r in lock.rpms] == ["old"]
    assert [r.filename for r in lock.resources() if r.label.startswith("rpm")] == ["glibc-2.18-1.x86_64.rpm"]


def test_another_target_is_selected_by_name(tmp_path: Path) -> None:
    lock = lockfile.load(_write(tmp_path, TWO_TARGETS), target="older")
    assert (lock.target.name, lock.target.glibc, lock.base.image) == ("older", "2.17", "local/older")
    assert [r.filename for r in lock.rpms] == ["glibc-2.17-1.x86_64.rpm"]


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: t, "no target 'centos7' (targets: old, older)"),
        (lambda t: t.replace('linker = "llvm"', 'linker = "gold"'), "linker must be one of llvm, rust-lld, not 'gold'"),
        (lambda t: t.replace('default_target = "old"', 'default_target = "new"'), "default_target 'new' is not"),
        (lambda t: t.replace('target = "older"', 'target = "nope"'), "rpm 'glibc': target 'nope' is not a target"),
        (lambda t: t.replace('glibc = "2.17"', 'glibc = "2.17"\narch = "riscv"'), "arch must be one of x86_64"),
        (lambda t: t.replace('target = "older"\n', ''), "rpm 'glibc': duplicate name"),
    ],
)
def test_bad_targets_are_one_line_errors(tmp_path: Path, edit, message: str) -> None:  # type: ignore[no-untyped-def]
    path = _write(tmp_path, edit(TWO_TARGETS))
    with pytest.raises(LockfileError) as err:
        lockfile.load(path, target="centos7" if "centos7" in message else None)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_schema_1_still_loads_as_one_target(tmp_path: Path) -> None:
    path = _write(tmp_path, f'schema = 1\n[target]\nname = "f20"\nglibc = "2.18"\n[base]\nimage = "x"\nid = "{ID}"\n')
    lock = lockfile.load(path)
    assert (lock.schema, lock.target.name, lock.targets, lock.linker) == (1, "f20", ("f20",), "llvm")


def test_an_unknown_schema_names_the_ones_read(tmp_path: Path) -> None:
    with pytest.raises(LockfileError, match=r"unknown schema version 3 \(this compatbuild reads 1, 2"):
        lockfile.load(_write(tmp_path, "schema = 3\n"))


def test_deeply_nested_toml_is_one_line(tmp_path: Path) -> None:
    path = _write(tmp_path, "x = " + "[" * 100_000 + "]" * 100_000 + "\n")
    with pytest.raises(LockfileError, match="not valid TOML"):
        lockfile.load(path)


def test_the_default_lockfile_is_schema_2_with_its_target_and_linker() -> None:
    lock = lockfile.load(PROJECT_ROOT / "rsrc.lock.toml")
    assert (lock.schema, lock.target.name, lock.target.glibc, lock.linker) == (2, "fedora20", "2.18", "rust-lld")
    assert lock.targets == ("fedora20", "centos7", "centos7-aarch64")
    assert lockfile.load(PROJECT_ROOT / "rsrc.lock.toml", target="centos7").base.image == "docker.io/library/centos:7"
    assert lock.base.pull_ref == f"docker.io/library/fedora@{lock.base.digest}"  # name@digest, no tag
