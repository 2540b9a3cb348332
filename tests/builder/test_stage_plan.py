"""Stage tags are digests of their inputs: what changes what, and what goes to Docker.

These tests need no Docker: they check the plan (tags, labels) and the exact build context
that would be sent. The Fedora-only parts (the rpms stage installing RPMs with rpm -Uvh)
cannot run on the Debian test profile, so their context is checked here.
"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

from tasks.builder import stages
from tasks.inputs import lockfile
from tasks.settings import PROJECT_ROOT
from tasks.store import Store, sha256_file

LOCK = PROJECT_ROOT / "rsrc.lock.toml"


def _with_rust(tmp_path: Path, sha: str) -> Path:
    text = LOCK.read_text()
    old = lockfile.load(LOCK).artifact("rust").sha256
    p = tmp_path / f"lock-{sha[:4]}.toml"
    p.write_text(text.replace(old, sha))
    return p


def test_chain_orders_parents_first() -> None:
    assert [s.name for s in stages.chain("builder")] == [
        "rpms", "make", "cmake", "llvm", "rust", "builder"]
    assert [s.name for s in stages.chain("smoke")] == ["rpms", "smoke"]


def test_changing_rust_pin_changes_only_rust_and_builder(tmp_path: Path) -> None:
    store = Store(tmp_path / "cache")
    before = {p.stage.name: p.tag for p in stages.plan(lockfile.load(LOCK), store, "builder")}
    after = {p.stage.name: p.tag for p in
             stages.plan(lockfile.load(_with_rust(tmp_path, "0" * 64)), store, "builder")}
    changed = {name for name in before if before[name] != after[name]}
    assert changed == {"rust", "builder"}
    smoke_before = stages.plan(lockfile.load(LOCK), store, "smoke")[-1].tag
    smoke_after = stages.plan(lockfile.load(_with_rust(tmp_path, "0" * 64)), store, "smoke")[-1].tag
    assert smoke_before == smoke_after


def test_same_inputs_same_tags_and_labels_name_inputs(tmp_path: Path) -> None:
    store = Store(tmp_path / "cache")
    a = stages.plan(lockfile.load(LOCK, linker="llvm"), store, "builder")
    b = stages.plan(lockfile.load(LOCK, linker="llvm"), store, "builder")
    assert [p.tag for p in a] == [p.tag for p in b]
    llvm = next(p for p in a if p.stage.name == "llvm")
    labels = llvm.labels
    assert labels["org.compatbuild.stage"] == "llvm"
    assert labels["org.compatbuild.parent"] == next(p.tag for p in a if p.stage.name == "cmake")
    assert lockfile.load(LOCK).artifact("llvm").sha256 in labels["org.compatbuild.inputs"]


def test_rpms_stage_context_holds_the_pinned_rpms_and_installs_them(tmp_path: Path) -> None:
    """What the Fedora rpms stage sends to Docker: the verified RPM files and rpm -Uvh."""
    store = Store(tmp_path / "cache")
    store.ensure()
    rpms = []
    for name in ("gcc", "make"):
        data = f"fake {name} rpm bytes".encode()
        f = tmp_path / f"{name}.rpm"
        f.write_bytes(data)
        sha = sha256_file(f)
        store.adopt(f, sha)
        rpms.append((name, sha))
    text = LOCK.read_text() + "".join(
        f'\n[[rpm]]\nname = "{n}"\nurl = "https://archive.invalid/Packages/{n}-1.fc20.x86_64.rpm"\n'
        f'sha256 = "{s}"\n' for n, s in rpms)
    lock_path = tmp_path / "lock.toml"
    lock_path.write_text(text)
    plan = stages.plan(lockfile.load(lock_path), store, "rpms")[-1]
    with stages.build_context(plan) as ctx:
        with tarfile.open(fileobj=io.BytesIO(ctx.read())) as tar:
            names = sorted(tar.getnames())
            dockerfile = tar.extractfile("Dockerfile").read().decode()  # type: ignore[union-attr]
            assert tar.extractfile("rpms/gcc-1.fc20.x86_64.rpm").read() == b"fake gcc rpm bytes"  # type: ignore[union-attr]
    assert names == ["Dockerfile", "rpms", "rpms/gcc-1.fc20.x86_64.rpm", "rpms/make-1.fc20.x86_64.rpm"]
    assert "rpm -Uvh --replacepkgs /tmp/rpms/*.rpm" in dockerfile
    assert "FROM ${PARENT}" in dockerfile
    # Adding an RPM pin changes the rpms tag, and so every stage after it.
    plain = stages.plan(lockfile.load(LOCK), store, "rpms")[-1]
    assert plain.tag != plan.tag


def test_context_holds_only_the_stage_inputs(tmp_path: Path) -> None:
    store = Store(tmp_path / "cache")
    store.ensure()
    lf = lockfile.load(LOCK)
    plan = next(p for p in stages.plan(lf, store, "llvm") if p.stage.name == "llvm")
    for i in plan.inputs:
        if i.arcname.startswith("inputs/"):
            i.source.parent.mkdir(parents=True, exist_ok=True)
            i.source.write_bytes(b"x")
    with stages.build_context(plan) as ctx, tarfile.open(fileobj=ctx) as tar:
        names = sorted(tar.getnames())
    assert names == ["Dockerfile", "inputs/clang/cfe-5.0.2.src.tar.xz",
                     "inputs/lld/lld-5.0.2.src.tar.xz", "inputs/llvm/llvm-5.0.2.src.tar.xz"]


def test_no_buildkit_only_syntax_in_dockerfiles() -> None:
    for f in (PROJECT_ROOT / "docker").glob("*/Dockerfile"):
        text = f.read_text()
        assert "<<" not in text and "--mount" not in text and "# syntax" not in text, f


def _with_linker(tmp_path: Path, linker: str) -> lockfile.Lockfile:
    p = tmp_path / f"lock-{linker}.toml"
    p.write_text(LOCK.read_text().replace('linker = "rust-lld"', f'linker = "{linker}"'))
    return lockfile.load(p)


def test_rust_lld_strategy_skips_llvm_and_builds_its_own_builder(tmp_path: Path) -> None:
    store = Store(tmp_path / "cache")
    lld = _with_linker(tmp_path, "rust-lld")
    assert [s.name for s in stages.chain("builder", "rust-lld")] == ["rpms", "rust", "builder"]
    plans = {p.stage.name: p for p in stages.plan(lld, store, "builder")}
    llvm_plans = {p.stage.name: p for p in stages.plan(_with_linker(tmp_path, "llvm"), store, "builder")}
    assert plans["rust"].parent_tag == plans["rpms"].tag  # no LLVM below rust
    assert plans["rpms"].tag == llvm_plans["rpms"].tag  # the shared stages are the same images
    assert plans["rust"].tag != llvm_plans["rust"].tag and plans["builder"].tag != llvm_plans["builder"].tag
    dockerfile = next(i for i in plans["builder"].inputs if i.arcname == "Dockerfile")
    assert "builder-rust-lld" in str(dockerfile.source)
    text = dockerfile.source.read_text()
    assert "-B/opt/compatbuild/ld" in text and "-fuse-ld" not in text.split("ENV", 1)[1]
    # `invoke llvm` still builds LLVM whatever the strategy
    assert [s.name for s in stages.chain("llvm", "rust-lld")] == ["rpms", "make", "cmake", "llvm"]


def test_an_unknown_linker_is_one_line(tmp_path: Path) -> None:
    import pytest

    from tasks.errors import LockfileError

    with pytest.raises(LockfileError, match="linker must be one of llvm, rust-lld, not 'gold'"):
        _with_linker(tmp_path, "gold")
    with pytest.raises(LockfileError, match="unknown linker 'gold'"):
        stages.chain("builder", "gold")


class _FakeImage:
    def __init__(self, image_id: str, tags: list[str]) -> None:
        self.id, self.tags, self.labels = image_id, tags, {"org.compatbuild.stage": "rust"}


class _FakeDocker:
    """What prune asks the daemon: the labelled images, then a removal each (some refused)."""

    def __init__(self, images: list[_FakeImage], refuse: set[str]) -> None:
        self.listed, self.refuse, self.removed = images, refuse, list[str]()

    def images(self, _label: str) -> list[_FakeImage]:
        return self.listed

    def remove_image(self, ref: str) -> None:
        from tasks.errors import DockerError

        if ref in self.refuse:
            raise DockerError(f"docker: cannot remove {ref}: conflict: unable to remove repository "
                              "reference (must force) - container 1234 is using its referenced image")
        self.removed.append(ref)


def test_prune_leaves_untagged_images_alone_and_never_stops_partway() -> None:
    """During a stage build, its intermediate layers are untagged images carrying the parent's
    labels: prune must not touch them. A tag Docker will not remove (in use) is kept, said,
    and the other stale tags are still removed."""
    dk = _FakeDocker([_FakeImage("sha256:inter", []),  # a build's intermediate layer
                      _FakeImage("sha256:a", ["compatbuild/rust:aaa"]),
                      _FakeImage("sha256:b", ["compatbuild/rust:bbb"]),
                      _FakeImage("sha256:c", ["compatbuild/rust:ccc"]),
                      _FakeImage("sha256:k", ["compatbuild/rust:keep"])],
                     refuse={"compatbuild/rust:aaa"})
    said: list[str] = []
    removed = stages.prune(dk, keep={"compatbuild/rust:keep"}, log=said.append)  # type: ignore[arg-type]
    assert removed == dk.removed == ["compatbuild/rust:bbb", "compatbuild/rust:ccc"]
    assert said[0].startswith("Kept compatbuild/rust:aaa: docker: cannot remove") and "is using" in said[0]
    assert said[1:] == ["Removed compatbuild/rust:bbb", "Removed compatbuild/rust:ccc"]
