"""Build and smoke on a Docker daemon that cannot see this machine's files.

A second dockerd (tests/dockerd.py) on tcp://127.0.0.1 with its own data-root: it starts
with no images, gets the test profile's builder and smoke stages from a real registry on
loopback (pushed there from the machine's daemon), and builds a crate whose path
dependency lies outside its workspace: the sources go in by archive, the library comes
back by archive, the target dir is a named volume on that daemon (so a rebuild is
incremental). The archive path is also run against the machine's own daemon with bind
mounts turned off (config ``remote = yes``).
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Iterator
from pathlib import Path

import docker.client
import pytest

from tasks import pipeline
from tasks.builder import stages, transport
from tasks.builder.docker_client import Docker
from tasks.elf.audit import audit_library
from tasks.inputs import lockfile
from tasks.profile.dockerd import running_dockerd
from tasks.profile.registryd import running_registry
from tasks.settings import Settings

pytestmark = [pytest.mark.docker, pytest.mark.registry]
CRATES = Path(__file__).resolve().parents[1] / "crates"


@pytest.fixture(scope="session")
def registry_addr(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real registry on 127.0.0.1:<free port> for this module's tests."""
    with running_registry(tmp_path_factory.mktemp("registry")) as addr:
        yield addr


@pytest.fixture(scope="session")
def remote(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Docker]:
    """A second, empty Docker daemon reached over tcp:// (it never sees this machine's files)."""
    folder = tmp_path_factory.mktemp("dockerd")
    try:
        with running_dockerd(folder) as host:
            dk = Docker(docker.client.DockerClient(base_url=host, timeout=600))
            yield dk
            dk.client.close()
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)


def copy_crate(src: Path, dest_parent: Path) -> Path:
    dest = dest_parent / src.name
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns("target"))
    return dest


def test_build_and_smoke_on_a_daemon_that_cannot_see_this_machine(
    remote: Docker, docker_client: Docker, registry_addr: str, profile_settings: Settings,
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    lock = lockfile.load(profile_settings.lock)
    repo = f"{registry_addr}/team/profile"
    for upto in ("builder", "smoke"):  # the team's main branch pushes its stages
        pipeline.image(docker_client, lock, profile_settings, upto, push=repo, log=lambda _: None,
                       on_line=lambda _: None)
    assert remote.remote and isinstance(transport.for_daemon(remote), transport.Archive)
    assert remote.images(f"{stages.LABEL_PREFIX}.project=compatbuild") == []  # it has nothing

    s = dataclasses.replace(profile_settings, cache=tmp_path / "cache", out=tmp_path / "out", registry=repo)
    monkeypatch.setattr(stages, "build_missing", lambda *a, **k: pytest.fail("built a stage"))
    crate, common = copy_crate(CRATES / "uses_common", tmp_path), copy_crate(CRATES / "common", tmp_path)
    lines: list[str] = []
    result = pipeline.build(remote, lock, s, crate, log=lines.append, on_line=lines.append)
    assert any(line.startswith("Pulled stage builder") for line in lines), lines
    assert any("Compiling common" in line for line in lines), lines
    [lib] = result.libraries
    assert lib.is_file() and audit_library(lib, target_glibc=lock.target.glibc).ok
    assert (crate / "Cargo.lock").is_file()  # written by the daemon's cargo fetch, brought back
    volumes = {v.name for v in remote.client.volumes.list()}
    assert "compatbuild-cargo-home" in volumes
    assert any(v.startswith(f"compatbuild-target-{lock.target.name}-uses_common-") for v in volumes)

    [smoked] = pipeline.smoke(remote, lock, s, [lib], symbol="test", log=lambda _: None, on_line=None)
    assert "uses_common says hello from ../common" in smoked.output

    # incremental: only the crate that changed compiles again, from the daemon's target volume
    src = crate / "src" / "lib.rs"
    src.write_text(src.read_text() + "\n// touched\n")
    lines.clear()
    pipeline.build(remote, lock, s, crate, log=lines.append, on_line=lines.append)
    compiled = [line.split()[1] for line in lines if line.strip().startswith("Compiling")]
    assert compiled == ["uses_common"], lines
    assert not (common / "target").exists()  # nothing was written into the read-only dependency


def test_the_archive_path_on_the_local_daemon_with_bind_mounts_off(
    docker_client: Docker, profile_settings: Settings, tmp_path: Path,
) -> None:
    lock = lockfile.load(profile_settings.lock)
    s = dataclasses.replace(profile_settings, out=tmp_path / "out", remote="yes")
    assert isinstance(transport.for_daemon(docker_client, s.remote), transport.Archive)
    crate, _ = copy_crate(CRATES / "uses_common", tmp_path), copy_crate(CRATES / "common", tmp_path)
    made: list[str] = []
    real_ensure = docker_client.ensure_volume

    def ensure(name: str, labels: dict[str, str]) -> bool:
        created = real_ensure(name, labels)
        if created:
            made.append(name)
        return created

    try:
        docker_client.ensure_volume = ensure  # type: ignore[method-assign]
        lines: list[str] = []
        result = pipeline.build(docker_client, lock, s, crate, log=lines.append, on_line=lines.append)
        [smoked] = pipeline.smoke(docker_client, lock, s, list(result.libraries), symbol="test",
                                  log=lambda _: None, on_line=None)
        assert "uses_common says hello from ../common" in smoked.output
        # the target dir was a named volume made for this crate, the library came back from it
        assert result.libraries[0].is_file()
        assert any(name.startswith(f"compatbuild-target-{lock.target.name}-uses_common-") for name in made), made
    finally:
        del docker_client.ensure_volume
        for name in made:  # only the volumes this test created
            docker_client.client.volumes.get(name).remove(force=True)


@pytest.mark.registry
def test_a_second_daemon_leaves_the_machine_daemons_bridge_and_containers_working(
    docker_client: Docker, profile: Path, tmp_path: Path,
) -> None:
    """dockerd --bridge none deletes docker0 at start-up; the helper puts it back."""
    from tasks.profile.dockerd import _default_bridge

    before = _default_bridge()
    assert before, "the machine daemon has no docker0 bridge to begin with"
    (tmp_path / "d2").mkdir()
    with running_dockerd(tmp_path / "d2"):
        assert _default_bridge() == before
    assert _default_bridge() == before
    status, _ = docker_client.run(lockfile.load(profile / "rsrc.lock.toml").base.id or "", ["true"])
    assert status == 0
