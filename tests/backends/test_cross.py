"""The docker backend's aarch64 route: cross-linking in centos7's x86_64 builder with rust-lld.

What it asks of Docker is checked offline with a recording stand-in (the real run, which
needs CentOS's AltArch RPMs and Docker Hub, is `online`): the centos7 chain first, with its
own pins and tags, then one cross stage holding the pinned aarch64 rust-std and the target's
RPMs; cargo runs there with ``--target aarch64-unknown-linux-gnu`` and the route's flags.
The flags themselves (:func:`tasks.backends.cross.cargo_env`) are tried for real on this
machine: the host's cargo links examples/hello with rust-lld against an arm64 Debian sysroot,
and it loads under qemu on bullseye's 2.31; tests/crates/with_cc, whose build script compiles
C for the target, meets the route's stand-in C compiler, and the failure is one line naming
the zig backend.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tasks import arches, pipeline
from tasks.backends import cross, zigtools
from tasks.backends import docker as docker_backend
from tasks.backends.outputs import BuildOptions
from tasks.builder import stages
from tasks.dlopen import matrix
from tasks.dlopen.harness import CrossCC
from tasks.dlopen.smoke import smoke_sysroot
from tasks.dlopen.sysroot import make_sysroot_from_debs
from tasks.errors import CrossCompileError, DockerError
from tasks.inputs import lockfile
from tasks.settings import PROJECT_ROOT, Settings
from tasks.store import Store
from tests.support.fakedocker import FakeDocker

LOCK = PROJECT_ROOT / "rsrc.lock.toml"
CROSS_DOCKERFILE = PROJECT_ROOT / "docker" / "cross-aarch64" / "Dockerfile"


def quiet(_line: str) -> None:
    pass


def unpinned_lock(tmp_path: Path) -> Path:
    """The real lockfile with every target's package list dropped: no RPM pins are needed."""
    lock = tmp_path / "rsrc.lock.toml"
    lock.write_text(re.sub(r"(?m)^packages = \[[^\]]*\]\n", "", LOCK.read_text()))
    return lock


def test_the_aarch64_builder_is_centos7s_chain_then_one_cross_stage(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lock_path = unpinned_lock(tmp_path)
    a64 = lockfile.load(lock_path, "centos7-aarch64")
    c7 = lockfile.load(lock_path, "centos7")
    calls: list[str] = []
    built: list[list[str]] = []
    monkeypatch.setattr(stages, "ensure_base",
                        lambda dk, lock, *a, **k: calls.append(f"base {lock.target.name}") or "b")
    monkeypatch.setattr(pipeline, "inputs_ready", lambda lock, s, names, log: calls.append(
        f"inputs {lock.target.name}: " + " ".join(sorted(set(names)))))

    def build_missing(dk: FakeDocker, store: Store, plans: list[stages.Plan], **_: Any) -> None:
        built.append([p.stage.name for p in plans])
        dk.present.update(p.tag for p in plans)  # as a real build leaves them

    monkeypatch.setattr(stages, "build_missing", build_missing)
    settings = Settings(lock=lock_path, cache=tmp_path / "cache", out=tmp_path / "out")
    dk = FakeDocker(set())
    tag = pipeline.image(dk, a64, settings, "builder", log=quiet)

    store = Store(settings.cache)
    c7_plans = stages.plan(c7, store, "builder")
    a64_plans = stages.plan(a64, store, "builder")
    assert [p.tag for p in a64_plans[:-1]] == [p.tag for p in c7_plans]  # centos7's own images, shared
    cross_plan = a64_plans[-1]
    assert (cross_plan.stage.name, cross_plan.parent_tag, cross_plan.tag) == ("cross", c7_plans[-1].tag, tag)
    assert {i.arcname for i in cross_plan.inputs} == {
        "Dockerfile", "inputs/rust-std-aarch64/rust-std-1.90.0-aarch64-unknown-linux-gnu.tar.xz"}
    assert calls == ["base centos7", "inputs centos7: rpms rust", "inputs centos7-aarch64: rpms rust-std-aarch64"]
    assert built == [["rpms", "rust", "builder"], ["cross"]]
    assert a64.artifact("rust-std-aarch64").size == 30485472


def test_an_aarch64_smoke_image_is_one_line_asking_nothing_of_docker(tmp_path: Path) -> None:
    a64 = lockfile.load(unpinned_lock(tmp_path), "centos7-aarch64")
    dk = FakeDocker(set())
    settings = Settings(lock=a64.path, cache=tmp_path / "cache", out=tmp_path / "out")
    with pytest.raises(DockerError) as err:
        pipeline.image(dk, a64, settings, "smoke")
    assert "\n" not in str(err.value) and "`invoke smoke --matrix`" in str(err.value)
    assert dk.lookups == []


class RecordingTransport:
    """Answers cargo's run as a failing C compile would; records what was asked."""

    def __init__(self, stderr: str) -> None:
        self.stderr = stderr
        self.asked: list[dict[str, Any]] = []

    def run_split(self, image: str, command: list[str], mounts: list[Any], **kw: Any) -> tuple[int, str, str]:
        self.asked.append({"image": image, "command": command, **kw})
        return 101, "", self.stderr


def test_cargo_in_the_cross_stage_targets_aarch64_and_c_code_is_one_line_naming_zig(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    a64 = lockfile.load(LOCK, "centos7-aarch64")
    stderr = ("error: failed to run custom build command for `with-cc v0.1.0`\n"
              f"  cargo:warning={cross.MARKER} aarch64-unknown-linux-gnu in the builder image\n"
              "  error occurred in cc-rs: command did not execute successfully (status code exit status: 1)\n")
    tp = RecordingTransport(stderr)
    monkeypatch.setattr(docker_backend, "for_daemon", lambda dk, remote: tp)
    monkeypatch.setattr(docker_backend, "ensure_fetched", lambda *a, **k: None)
    crate = tmp_path / "with_cc"
    shutil.copytree(PROJECT_ROOT / "tests" / "crates" / "with_cc", crate)
    settings = Settings(lock=LOCK, cache=tmp_path / "cache", out=tmp_path / "out", warm_idle=0)
    with pytest.raises(CrossCompileError) as err:
        docker_backend.build_crate(FakeDocker(set()), a64, settings, crate, BuildOptions(), image="compatbuild/cross:x",
                                   log=quiet, on_line=quiet)
    assert str(err.value) == (
        "with-cc compiles C code for aarch64-unknown-linux-gnu (a build script runs a C compiler, such as the cc "
        "crate), and the docker backend only cross-links centos7-aarch64 with rust-lld; build it with "
        "`--backend zig`, whose zig cc cross-compiles C")
    assert err.value.exit_code == 38
    [asked] = tp.asked
    assert asked["command"][:5] == ["cargo", "build", "--offline", "--target", "aarch64-unknown-linux-gnu"]
    env = asked["environment"]
    assert env["CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER"] == "rust-lld"
    assert f"--sysroot={cross.SYSROOT}" in env["CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUSTFLAGS"]
    assert env["CC_aarch64_unknown_linux_gnu"] == cross.NO_CC and asked["network_disabled"] is True
    assert cross.MARKER in CROSS_DOCKERFILE.read_text()  # the stand-in compiler the image installs says it


# ----------------------------------------------------------------------------- the route's flags, for real


@pytest.fixture(scope="module")
def bullseye_arm64(profile_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    settings = Settings(lock=LOCK, cache=profile_cache / "store", out=tmp_path_factory.mktemp("o"), progress="never")
    lock = lockfile.load(LOCK, "centos7-aarch64")
    _glibc, debs = matrix.deb_suites(lock)["bullseye-arm64"]
    pipeline.inputs_ready(lock, settings, [a.name for a in debs], quiet)
    store = Store(settings.cache)
    return make_sysroot_from_debs([store.path(a.sha256) for a in debs],
                                  tmp_path_factory.mktemp("cross-sysroots") / "bullseye-arm64", log=quiet)


def _host_cargo(crate: Path, sysroot: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """The host's cargo with the cross stage's flags, pointed at ``sysroot`` instead of SYSROOT."""
    linkdir = tmp_path / "cross-lib"
    linkdir.mkdir()
    (linkdir / "libgcc_s.so").symlink_to(sysroot / "lib" / "aarch64-linux-gnu" / "libgcc_s.so.1")
    no_cc = tmp_path / "no-cross-cc"
    no_cc.write_text(f'#!/bin/sh\necho "{cross.MARKER} aarch64-unknown-linux-gnu (test stand-in)" >&2\nexit 1\n')
    no_cc.chmod(0o755)
    env = {**os.environ, "CARGO_TARGET_DIR": str(tmp_path / "target"), "CARGO_TERM_COLOR": "never",
           **cross.cargo_env(arches.AARCH64, sysroot=str(sysroot), linkdir=str(linkdir), no_cc=str(no_cc))}
    return subprocess.run(["cargo", "build", "--release", "--message-format=json-render-diagnostics",
                           "--target", arches.AARCH64.rust_triple], cwd=crate, env=env, capture_output=True,
                          text=True, timeout=600, check=False)


@pytest.fixture(scope="module")
def zig(profile_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> CrossCC:
    """The pinned zig, which cross-links the smoke harness for the arm64 sysroot."""
    cache = profile_cache / "store"
    lock = lockfile.load(LOCK, "centos7-aarch64")
    settings = Settings(lock=LOCK, cache=cache, out=tmp_path_factory.mktemp("o"), progress="never")
    pipeline.inputs_ready(lock, settings, zigtools.ARTIFACTS, quiet)
    return CrossCC(zigtools.install(lock, Store(cache), cache, log=quiet).zig, cache / "zig" / "cache")


def test_the_route_links_hello_with_rust_lld_and_it_loads_on_arm64_bullseye(
        bullseye_arm64: Path, zig: CrossCC, tmp_path: Path) -> None:
    crate = tmp_path / "hello"
    shutil.copytree(PROJECT_ROOT / "examples" / "hello", crate, ignore=shutil.ignore_patterns("target"))
    proc = _host_cargo(crate, bullseye_arm64, tmp_path)
    assert proc.returncode == 0, proc.stderr
    [lib] = [Path(f) for line in proc.stdout.splitlines() if line.startswith("{")
             for f in json.loads(line).get("filenames", []) if f.endswith(".so")]
    assert arches.of_file(lib) == arches.AARCH64
    comment = subprocess.run(["readelf", "-p", ".comment", str(lib)], capture_output=True, text=True).stdout
    assert "Linker: LLD" in comment  # rust-lld, no C driver
    [result] = smoke_sysroot([lib], bullseye_arm64, cache=tmp_path / "cache", strict=False, cross=zig)
    assert result.ok, result.output


def test_c_code_meets_the_routes_stand_in_compiler_and_the_error_names_zig(
        bullseye_arm64: Path, tmp_path: Path) -> None:
    crate = tmp_path / "with_cc"
    shutil.copytree(PROJECT_ROOT / "tests" / "crates" / "with_cc", crate, ignore=shutil.ignore_patterns("target"))
    proc = _host_cargo(crate, bullseye_arm64, tmp_path)
    assert proc.returncode != 0
    error = cross.cross_error("with-cc", lockfile.load(LOCK, "centos7-aarch64"), proc.stderr)
    assert isinstance(error, CrossCompileError), proc.stderr[-2000:]
    assert "`--backend zig`" in str(error) and "\n" not in str(error)


def test_the_aarch64_sysroot_pins_come_from_the_altarch_vault_as_aarch64_packages(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tasks.inputs import rpmpins
    from tasks.inputs.rpmver import Dep, Evr

    seen: dict[str, Any] = {}
    monkeypatch.setattr(stages, "ensure_base", lambda *a, **k: "compatbuild/base:c7")
    monkeypatch.setattr(rpmpins, "installed_in_base", lambda dk, image: set())
    monkeypatch.setattr(rpmpins, "refresh", lambda path, **kw: seen.update(kw) or [])
    lock = tmp_path / "rsrc.lock.toml"
    lock.write_text(LOCK.read_text())
    settings = Settings(lock=lock, cache=tmp_path / "cache", out=tmp_path / "out")
    pipeline.refresh_rpm_pins(FakeDocker(set()), lockfile.load(lock, target="centos7-aarch64"), settings)
    assert seen["target"] == "centos7-aarch64" and seen["arches"] == ("aarch64", "noarch")
    assert seen["repos"] == ("https://vault.centos.org/altarch/7.9.2009/os/aarch64/",
                             "https://vault.centos.org/altarch/7.9.2009/updates/aarch64/")

    def pkg(arch: str) -> rpmpins.Package:
        return rpmpins.Package("glibc", arch, Evr(0, "2.17", "317.el7"), f"glibc.{arch}.rpm", "", "0" * 64,
                               "sha256", 1, (Dep("glibc"),), (), ())

    repo = [pkg("x86_64"), pkg("aarch64")]
    assert [p.arch for p in rpmpins.resolve([repo], ["glibc"], arches=("aarch64", "noarch"))] == ["aarch64"]
    assert [p.arch for p in rpmpins.resolve([repo], ["glibc"])] == ["x86_64"]  # the default, as before
