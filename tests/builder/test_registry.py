"""Stage images shared through a real registry (Debian's docker-registry on loopback).

Each test makes its own two-stage chain on the test profile's base (``FROM ${PARENT}`` plus
an ENV holding a nonce, so it builds in a second and its tags are its own), under the
test-only local repository ``compatbuild-test`` and its own registry repository: nothing
shared is pushed over, and the only local images removed are the ones the test made.
"""

from __future__ import annotations

import dataclasses
import json
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tasks import pipeline
from tasks.builder import registry, stages
from tasks.builder.docker_client import Docker, redact
from tasks.builder.stages import Plan, Stage
from tasks.errors import RegistryError, RegistryImageRefused, RegistryTagMoved
from tasks.inputs import lockfile
from tasks.profile.registryd import running_registry
from tasks.settings import PROJECT_ROOT, Settings
from tasks.store import sha256_file

pytestmark = [pytest.mark.docker, pytest.mark.registry]


@pytest.fixture(scope="session")
def registry_addr(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real registry on 127.0.0.1:<free port> for this module's tests."""
    with running_registry(tmp_path_factory.mktemp("registry")) as addr:
        yield addr


@pytest.fixture
def test_repo(monkeypatch: pytest.MonkeyPatch) -> None:
    """Local stage tags and labels under ``compatbuild-test``: never a shared compatbuild/ tag."""
    monkeypatch.setattr(stages, "REPO", "compatbuild-test")


def make_chain(root: Path, lock: lockfile.Lockfile, nonce: str) -> list[Plan]:
    """Two tiny stages a -> b on the profile's base, their Dockerfiles under ``root``."""
    plans: list[Plan] = []
    parent = stages.base_tag(lock)
    for name in ("regtest-a", "regtest-b"):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "Dockerfile").write_text(f"ARG PARENT\nFROM ${{PARENT}}\nENV COMPATBUILD_TEST_NONCE={nonce}-{name}\n")
        s = Stage(name, "base" if not plans else plans[-1].stage.name, folder=str(folder))
        inputs = tuple(stages.Input(p.relative_to(folder).as_posix(), sha256_file(p), p)
                       for p in sorted(folder.iterdir()))
        plans.append(Plan(s, parent, inputs))
        parent = plans[-1].tag
    return plans


@pytest.fixture
def chain(tmp_path: Path, profile_lock: Path, docker_client: Docker, test_repo: None) -> Iterator[list[Plan]]:
    lock = lockfile.load(profile_lock)
    stages.ensure_base(docker_client, lock, print)
    plans = make_chain(tmp_path / "docker", lock, secrets.token_hex(6))
    yield plans
    for p in plans:  # only what this test made
        docker_client.remove_image(p.tag)


def cfg(tmp_path: Path, profile_lock: Path, name: str, registry_repo: str = "") -> Settings:
    """Settings with a cache of their own: a machine with an empty registry index."""
    return Settings(lock=profile_lock, cache=tmp_path / name, out=tmp_path / "out", registry=registry_repo)


def test_pushed_stages_are_pulled_checked_and_nothing_is_built(
    chain: list[Plan], docker_client: Docker, registry_addr: str, tmp_path: Path, profile_lock: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    dk, lock = docker_client, lockfile.load(profile_lock)
    said: list[str] = []
    built = pipeline.stages_ready(dk, lock, cfg(tmp_path, profile_lock, "builder"), chain, log=said.append,
                                  on_line=lambda _: None)
    assert [p.stage.name for p in built] == ["regtest-a", "regtest-b"]
    reg = registry.Registry.named(f"{registry_addr}/team/pushed", tmp_path / "builder")
    refs = registry.push_stages(dk, reg, chain, log=said.append)
    assert refs == [f"{registry_addr}/team/pushed:{p.stage.name}-{p.digest[:20]}" for p in chain]
    assert all(dk.image(r) is None for r in refs)  # the registry names were only the way out
    for p in chain:
        dk.remove_image(p.tag)
    assert all(dk.image(p.tag) is None for p in chain)

    monkeypatch.setattr(stages, "build_missing", lambda *a, **k: pytest.fail("built a stage"))
    monkeypatch.setattr(pipeline, "inputs_ready", lambda *a, **k: pytest.fail("fetched inputs"))
    monkeypatch.setattr(stages, "ensure_base", lambda *a, **k: pytest.fail("needed the base"))
    puller = cfg(tmp_path, profile_lock, "puller", reg.repo)
    said.clear()
    assert pipeline.stages_ready(dk, lock, puller, chain, log=said.append) == []
    assert said == [f"Pulled stage regtest-b ({refs[1]})"]  # the newest stage is enough
    image = dk.image(chain[1].tag)
    assert image is not None and image.labels == {**image.labels, **chain[1].labels}
    index = json.loads((tmp_path / "puller" / "registry" / "index.json").read_text())
    assert list(index) == [refs[1]] and index[refs[1]].startswith("sha256:")
    said.clear()
    assert pipeline.stages_ready(dk, lock, puller, chain, log=said.append) == [] and said == []


def _push_impostor(dk: Docker, plan: Plan, ref: str, *, labels: dict[str, str], nonce: str) -> None:
    """Build an image other than ``plan``'s, with ``labels``, and push it as ``ref``."""
    folder = Path(plan.inputs[0].source).parent.parent / f"impostor-{nonce}"
    folder.mkdir()
    (folder / "Dockerfile").write_text(f"ARG PARENT\nFROM ${{PARENT}}\nENV IMPOSTOR={nonce}\n")
    other = Plan(Stage("impostor", "base", folder=str(folder)), plan.parent_tag,
                 (stages.Input("Dockerfile", sha256_file(folder / "Dockerfile"), folder / "Dockerfile"),))
    with stages.build_context(other) as ctx:
        image_id = dk.build(ctx, tag=ref, buildargs={"PARENT": plan.parent_tag}, labels=labels,
                            on_line=lambda _: None, what="impostor")
    try:
        dk.push(ref)
    finally:
        dk.remove_image(ref)
    assert dk.image(image_id) is None


def test_an_image_with_other_labels_under_the_right_tag_is_refused(
    chain: list[Plan], docker_client: Docker, registry_addr: str, tmp_path: Path, profile_lock: Path,
) -> None:
    dk, p = docker_client, chain[0]
    reg = registry.Registry.named(f"{registry_addr}/team/tampered", tmp_path / "c")
    labels = {**p.labels, "org.compatbuild.inputs": json.dumps({"Dockerfile": "0" * 64})}
    _push_impostor(dk, p, reg.ref(p), labels=labels, nonce=secrets.token_hex(4))
    with pytest.raises(RegistryImageRefused) as err:
        registry.pull_stage(dk, reg, p)
    assert "org.compatbuild.inputs" in str(err.value) and "\n" not in str(err.value)
    assert err.value.exit_code == 40
    assert dk.image(p.tag) is None and dk.image(reg.ref(p)) is None
    assert not reg.index.exists()  # nothing about it is trusted


def test_a_tag_moved_in_the_registry_is_refused(
    chain: list[Plan], docker_client: Docker, registry_addr: str, tmp_path: Path, profile_lock: Path,
) -> None:
    dk, lock, p = docker_client, lockfile.load(profile_lock), chain[0]
    pipeline.stages_ready(dk, lock, cfg(tmp_path, profile_lock, "c"), chain[:1], on_line=lambda _: None)
    reg = registry.Registry.named(f"{registry_addr}/team/moved", tmp_path / "c")
    registry.push_stages(dk, reg, chain[:1], log=lambda _: None)
    first = reg.known()[reg.ref(p)]
    dk.remove_image(p.tag)
    # someone pushes another image, with the right labels, over the same tag
    _push_impostor(dk, p, reg.ref(p), labels=p.labels, nonce=secrets.token_hex(4))
    with pytest.raises(RegistryTagMoved) as err:
        registry.pull_stage(dk, reg, p)
    assert "moved" in str(err.value) and first[:19] in str(err.value) and "\n" not in str(err.value)
    assert err.value.exit_code == 41
    assert dk.image(p.tag) is None and dk.image(reg.ref(p)) is None
    assert reg.known()[reg.ref(p)] == first  # the index still holds the first digest


def test_the_base_image_comes_from_the_registry_by_digest(
    docker_client: Docker, registry_addr: str, tmp_path: Path, profile_lock: Path, test_repo: None,
) -> None:
    dk = docker_client
    lock = lockfile.load(profile_lock)
    base = dk.image(stages.base_tag(lock)) or dk.image(lock.base.image)
    assert base is not None
    repo = f"{registry_addr}/team/base"
    dk.tag(str(base.id), f"{repo}:bullseye")
    try:
        digest = dk.push(f"{repo}:bullseye")
    finally:
        dk.remove_image(f"{repo}:bullseye")
    # a lockfile that pins the base by that digest alone, under a name no daemon has
    pinned = dataclasses.replace(lock, base=lockfile.BaseImage(image="nowhere.invalid/base", digest=digest))
    tag = stages.base_tag(pinned)
    assert dk.image(tag) is None
    said: list[str] = []
    try:
        assert stages.ensure_base(dk, pinned, said.append, registry=repo) == tag
        assert said == [f"Pulled base image {repo}@{digest}"]
        found = dk.image(tag)
        assert found is not None and found.id == base.id
    finally:
        dk.remove_image(tag)
        dk.remove_image(f"{repo}@{digest}")


def test_a_bad_registry_name_is_one_line_with_its_own_exit_code(profile_lock: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "invoke", "image", "--lock", str(profile_lock),
                           "--pull", "Registry.Corp/UPPER:tag"], cwd=PROJECT_ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == RegistryError.exit_code == 42
    assert done.stderr.strip().count("\n") == 0 and "REGISTRY/REPO" in done.stderr


def test_credentials_never_reach_an_error_message() -> None:
    raw = ('Get "https://bob:hunter2@registry.corp/v2/": unauthorized; {"auth":"Ym9iOmh1bnRlcjI=",'
           ' "password": "hunter2"} Authorization: Basic Ym9iOmh1bnRlcjI=')
    out = redact(raw)
    assert "hunter2" not in out and "Ym9iOmh1bnRlcjI" not in out and "registry.corp" in out
