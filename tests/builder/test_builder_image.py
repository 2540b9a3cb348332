"""The image stages built for real on the bullseye test profile, and their rebuild rules.

What the profile cannot do as Fedora would: it has no yum/rpm and pins no RPMs, so its
rpms stage installs nothing (the base already has gcc); what the Fedora rpms stage sends to
Docker is checked in test_stage_plan.py. Every other stage runs the same Dockerfile with
inputs of upstream's form: make's configure, cmake's binary tarball, a CMake source tree
for llvm, and a Rust combined installer holding this machine's real toolchain.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from tasks import pipeline
from tasks import profile as tp
from tasks.builder import stages
from tasks.builder.docker_client import Docker
from tasks.errors import StageBuildError
from tasks.inputs import lockfile
from tasks.settings import PROJECT_ROOT, Settings
from tasks.store import Store, sha256_file

pytestmark = pytest.mark.docker


class Recorder:
    def __init__(self) -> None:
        self.log: list[str] = []
        self.lines: list[str] = []

    def built(self) -> list[str]:
        return [ln.split()[2] for ln in self.log if ln.startswith("Building stage")]


def build(dk: Docker, lock: Path, s: Settings, upto: str = "builder") -> tuple[str, Recorder]:
    rec = Recorder()
    tag = pipeline.image(dk, lockfile.load(lock), s, upto, log=rec.log.append, on_line=rec.lines.append)
    return tag, rec


def variant(profile_lock: Path, dest: Path, name: str, new_file: Path) -> Path:
    """A copy of the profile lockfile whose artifact ``name`` is ``new_file``."""
    lf = lockfile.load(profile_lock)
    old = lf.artifact(name)
    text = profile_lock.read_text().replace(old.url, new_file.as_uri()).replace(old.sha256, sha256_file(new_file))
    dest.mkdir(parents=True, exist_ok=True)
    out = dest / "rsrc.lock.toml"
    out.write_text(text)
    return out


@pytest.fixture(scope="module")
def builder(docker_client: Docker, profile_lock: Path, profile_settings: Settings) -> tuple[str, Recorder]:
    return build(docker_client, profile_lock, profile_settings)


def test_every_stage_builds_for_real_and_is_labelled(
    docker_client: Docker, builder: tuple[str, Recorder], profile_lock: Path, profile_settings: Settings
) -> None:
    tag, _ = builder
    plans = stages.plan(lockfile.load(profile_lock), Store(profile_settings.cache), "builder")
    assert tag == plans[-1].tag
    for p in plans:
        image = docker_client.image(p.tag)
        assert image is not None, p.tag
        assert image.labels["org.compatbuild.stage"] == p.stage.name
        assert image.labels["org.compatbuild.parent"] == p.parent_tag
    status, out = docker_client.run(tag, ["sh", "-c", "make --version; cmake --version; clang --version; "
                                          "ld.lld --version; rustc --version; cargo --version; "
                                          "for t in make cmake clang ld.lld rustc cargo; do command -v $t; done"])
    assert status == 0, out
    assert "GNU Make" in out and "cmake version 3.29.3" in out and "clang version" in out
    assert "rustc 1." in out and "cargo 1." in out
    for tool in ("make", "cmake", "clang", "ld.lld", "rustc", "cargo"):
        assert f"/usr/local/bin/{tool}" in out, tool  # every stage installed its tool


def test_second_run_builds_nothing_and_says_nothing(
    docker_client: Docker, builder: tuple[str, Recorder], profile_lock: Path, profile_settings: Settings
) -> None:
    tag, rec = build(docker_client, profile_lock, profile_settings)
    assert tag == builder[0]
    assert rec.log == [] and rec.lines == []


def test_changing_rust_rebuilds_only_rust_and_builder(
    docker_client: Docker, builder: tuple[str, Recorder], profile_lock: Path, profile_settings: Settings,
    tmp_path: Path,
) -> None:
    small = tp.make_small_rust_installer(tmp_path / "in", f"1.0.{os.getpid() % 1000}")
    lock = variant(profile_lock, tmp_path / "v", "rust", small)
    tag, rec = build(docker_client, lock, profile_settings)
    assert rec.built() == ["rust", "builder"]
    assert any("compatbuild test profile stub" in ln for ln in rec.lines)  # its install.sh ran
    store = Store(profile_settings.cache)
    old = {p.stage.name: p.tag for p in stages.plan(lockfile.load(profile_lock), store, "builder")}
    new = {p.stage.name: p.tag for p in stages.plan(lockfile.load(lock), store, "builder")}
    assert [n for n in old if old[n] != new[n]] == ["rust", "builder"]
    assert tag == new["builder"]
    for stale in (new["builder"], new["rust"]):  # leave the daemon as we found it
        docker_client.remove_image(stale)


def _broken_make(dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    src = dest / "make-9.9" / "configure"
    src.parent.mkdir(parents=True)
    src.write_text("#!/bin/sh\necho 'checking for a broken build... yes'\n"
                   "echo 'configure: error: this tarball is broken on purpose' >&2\nexit 1\n")
    src.chmod(0o755)
    out = dest / "make-9.9.tar.gz"
    with tarfile.open(out, "w:gz") as tar:
        tar.add(src.parent, arcname="make-9.9")
    return out


def test_failing_stage_reports_itself_with_the_end_of_its_log(
    docker_client: Docker, builder: tuple[str, Recorder], profile_lock: Path, profile_settings: Settings,
    tmp_path: Path,
) -> None:
    lock = variant(profile_lock, tmp_path / "v", "make", _broken_make(tmp_path / "in"))
    with pytest.raises(StageBuildError) as err:
        build(docker_client, lock, profile_settings)
    text = str(err.value)
    assert text.startswith("stage make failed")
    assert "this tarball is broken on purpose" in text  # the end of the log is in the message
    plan = stages.plan(lockfile.load(lock), Store(profile_settings.cache), "make")[-1]
    assert docker_client.image(plan.tag) is None  # nothing half-built was tagged


def test_failing_stage_via_invoke_is_one_error_and_exit_7(
    profile_lock: Path, profile_settings: Settings, builder: tuple[str, Recorder], tmp_path: Path
) -> None:
    lock = variant(profile_lock, tmp_path / "v", "make", _broken_make(tmp_path / "in"))
    r = _invoke("image", lock, profile_settings)
    assert r.returncode == 7, r.stderr
    assert "Traceback" not in r.stderr
    assert "compatbuild: stage make failed" in r.stderr
    assert "this tarball is broken on purpose" in r.stdout  # the log streamed as it came


def _invoke(task: str, lock: Path, s: Settings) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "INVOKE_COMPATBUILD_CACHE": str(s.cache)}
    return subprocess.run([sys.executable, "-m", "invoke", task, "--lock", str(lock)], cwd=PROJECT_ROOT,
                          env=env, capture_output=True, text=True, timeout=900)


def test_two_concurrent_runs_end_with_one_image(
    docker_client: Docker, builder: tuple[str, Recorder], profile_lock: Path, profile_settings: Settings,
    tmp_path: Path,
) -> None:
    small = tp.make_small_rust_installer(tmp_path / "in", f"2.0.{os.getpid() % 1000}")
    lock = variant(profile_lock, tmp_path / "v", "rust", small)
    env = {**os.environ, "INVOKE_COMPATBUILD_CACHE": str(profile_settings.cache)}
    procs = [subprocess.Popen([sys.executable, "-m", "invoke", "rust", "--lock", str(lock)], cwd=PROJECT_ROOT,
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=900) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    tags = {o[0].strip().splitlines()[-1] for o in outs}
    assert len(tags) == 1
    assert sum(o[0].count("Building stage rust") for o in outs) == 1  # one built, one waited
    built = tags.pop()
    assert docker_client.image(built) is not None
    plans = stages.plan(lockfile.load(lock), Store(profile_settings.cache), "rust")
    assert plans[-1].tag == built
    docker_client.remove_image(built)  # leave the daemon as we found it


def test_images_lists_and_prune_removes_only_stale_tags(
    docker_client: Docker, builder: tuple[str, Recorder]
) -> None:
    tag = builder[0]
    image = docker_client.image(tag)
    assert image is not None
    stale = "compatbuild/builder:stale0000000000000000"
    docker_client.tag(str(image.id), stale)
    listed = {t for _s, t, _i in stages.project_images(docker_client)}
    assert tag in listed and stale in listed
    removed = stages.prune(docker_client, keep=listed - {stale}, log=lambda _l: None)
    assert removed == [stale]
    assert docker_client.image(stale) is None and docker_client.image(tag) is not None
