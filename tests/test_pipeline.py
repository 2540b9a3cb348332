"""tasks.pipeline, the one composer: what each image call asks of Docker, and what it never does.

A recording stand-in for the Docker client answers image lookups, so these run without a
daemon; the real stages are built in test_image.py and test_build_smoke.py.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from tasks import pipeline
from tasks.builder import stages
from tasks.errors import LockfileError
from tasks.inputs import lockfile
from tasks.settings import PROJECT_ROOT, Settings
from tasks.store import Store
from tests.support.fakedocker import FakeDocker

LOCK = PROJECT_ROOT / "rsrc.lock.toml"


def settings(tmp_path: Path, lock: Path = LOCK) -> Settings:
    return Settings(lock=lock, cache=tmp_path / "cache", out=tmp_path / "out")


def pinned(tmp_path: Path) -> lockfile.Lockfile:
    """The real lockfile with its target's packages cleared, so no RPM pins are needed."""
    lf = lockfile.load(LOCK)
    return dataclasses.replace(lf, target=dataclasses.replace(lf.target, packages=()))


def test_unpinned_rpms_are_an_error_naming_the_refresh_task_and_the_lockfile_is_untouched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    lock = tmp_path / "rsrc.lock.toml"
    lock.write_text(LOCK.read_text())
    lf = lockfile.load(lock)
    assert lf.target.packages and not lf.rpms  # the checked-in state of a fresh clone
    refreshed: list[object] = []
    monkeypatch.setattr(pipeline, "refresh_rpm_pins", lambda *a, **k: refreshed.append(a))
    dk = FakeDocker(set())
    for upto in ("builder", "smoke"):
        with pytest.raises(LockfileError) as err:
            pipeline.image(dk, lf, settings(tmp_path, lock), upto)
        assert "`invoke rpms --refresh" in str(err.value) and "\n" not in str(err.value)
    assert refreshed == [] and dk.lookups == []  # decided before Docker is asked anything
    assert lock.read_text() == LOCK.read_text()


def test_an_existing_image_costs_one_lookup_and_nothing_else(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    lf = pinned(tmp_path)
    tag = stages.plan(lf, Store(tmp_path / "cache"), "builder")[-1].tag
    dk = FakeDocker({tag})
    monkeypatch.setattr(pipeline, "inputs_ready", lambda *a, **k: pytest.fail("fetched inputs"))
    monkeypatch.setattr(stages, "build_missing", lambda *a, **k: pytest.fail("built stages"))
    said: list[str] = []
    assert pipeline.image(dk, lf, settings(tmp_path), "builder", log=said.append) == tag
    assert dk.lookups == [tag] and said == []


def test_a_missing_stage_ensures_the_base_once_then_fetches_then_builds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    lf = pinned(tmp_path)
    calls: list[str] = []
    monkeypatch.setattr(stages, "ensure_base", lambda *a, **k: calls.append("base") or "b")
    monkeypatch.setattr(pipeline, "inputs_ready",
                        lambda lock, s, names, log: calls.append("inputs " + " ".join(sorted(set(names)))))
    monkeypatch.setattr(stages, "build_missing",
                        lambda dk, store, plans, **k: calls.append(f"build {len(plans)} stages"))
    pipeline.image(FakeDocker(set()), lf, settings(tmp_path), "builder")
    assert calls == ["base", "inputs rpms rust", "build 3 stages"]  # rust-lld: rpms, rust, builder
    calls.clear()
    pipeline.image(FakeDocker(set()), dataclasses.replace(lf, linker="llvm"), settings(tmp_path), "builder")
    assert calls == ["base", "inputs clang cmake lld llvm make rpms rust", "build 6 stages"]


class PullingDocker(FakeDocker):
    """Has no image at all; records pulls and tags, answering a pull with a made-up image."""

    def __init__(self) -> None:
        super().__init__(set())
        self.pulls: list[str] = []
        self.tags: list[tuple[str, str]] = []

    def pull(self, ref: str) -> Any:
        self.pulls.append(ref)
        return type("Image", (), {"id": "sha256:" + "c" * 64})()

    def tag(self, image_id: str, ref: str) -> None:
        self.tags.append((image_id, ref))


def test_the_centos7_target_pulls_centos_7_by_digest_and_gets_its_own_tags(tmp_path: Path) -> None:
    """What a glibc 2.17 build asks of Docker, checked offline (the real run is `online`)."""
    c7 = lockfile.load(LOCK, target="centos7")
    f20 = lockfile.load(LOCK)
    dk = PullingDocker()
    tag = stages.ensure_base(dk, c7, log=lambda _: None)
    digest = "sha256:be65f488b7764ad3638f236b7b515b3678369a5124c47b8d32916d6487418ea4"
    assert dk.pulls == [f"docker.io/library/centos@{digest}"]
    assert dk.tags == [("sha256:" + "c" * 64, tag)] and tag != stages.base_tag(f20)
    store = Store(tmp_path / "cache")
    c7_plans = {p.stage.name: p for p in stages.plan(c7, store, "builder")}
    f20_plans = {p.stage.name: p for p in stages.plan(f20, store, "builder")}
    assert c7_plans.keys() == f20_plans.keys() == {"rpms", "rust", "builder"}  # the same stages
    assert all(c7_plans[n].tag != f20_plans[n].tag for n in c7_plans)  # never each other's images


def test_offline_the_first_run_says_test_profile_is_the_way_to_try_it() -> None:
    from tasks.errors import OFFLINE_HINT, DockerError, LockfileError

    class Offline(PullingDocker):
        def pull(self, ref: str) -> Any:
            raise DockerError(f"docker: cannot pull {ref}: dial tcp: lookup registry-1.docker.io: no such host")

    with pytest.raises(DockerError) as err:
        stages.ensure_base(Offline(), lockfile.load(LOCK), log=lambda _: None)
    assert "no such host" in str(err.value) and str(err.value).endswith(OFFLINE_HINT)
    assert "`invoke test-profile`" in OFFLINE_HINT
    with pytest.raises(LockfileError) as pins:
        pipeline.require_rpm_pins(lockfile.load(LOCK))  # the shipped lockfile pins no RPMs yet
    assert str(pins.value).endswith(OFFLINE_HINT)


def test_the_centos7_pins_come_from_the_vault_by_the_same_refresh(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tasks.inputs import rpmpins as rpms

    seen: dict[str, Any] = {}
    monkeypatch.setattr(stages, "ensure_base", lambda *a, **k: "compatbuild/base:c7")
    monkeypatch.setattr(rpms, "installed_in_base", lambda dk, image: set())
    monkeypatch.setattr(rpms, "refresh", lambda path, **kw: seen.update(kw) or [])
    lock = tmp_path / "rsrc.lock.toml"
    lock.write_text(LOCK.read_text())
    pipeline.refresh_rpm_pins(FakeDocker(set()), lockfile.load(lock, target="centos7"), settings(tmp_path, lock))
    assert seen["target"] == "centos7"
    assert seen["repos"] == ("https://vault.centos.org/7.9.2009/os/x86_64/",
                             "https://vault.centos.org/7.9.2009/updates/x86_64/")
    assert "glibc" in seen["packages"] and "gcc" in seen["packages"]
