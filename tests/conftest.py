"""Shared session fixtures: the Docker daemon, the bullseye test profile, bullseye's glibc.

The test profile (``tasks.profile``) is a local, offline stand-in for the upstream
inputs: a Debian bullseye (glibc 2.31) base image made with debootstrap + docker import,
and inputs of the same form as upstream's. The same stage Dockerfiles run on it for real.
Its slow parts (debootstrap, packing the Rust toolchain, the image stages) are cached
under ``tasks.profile.default_cache_dir()`` (``COMPATBUILD_TESTPROFILE_CACHE``, else
``$COMPATBUILD_CACHE/testprofile``, else ``~/.cache/compatbuild/testprofile``), whose
``store/`` holds the profile's downloads and the pipeline's inputs alike, so they are paid
once per machine; CI pays them once per run.

Tests that need Docker never skip: without a daemon they fail, saying why.

``bullseye`` is Debian bullseye's glibc 2.31 unpacked into a sysroot (no Docker): its own
loader runs a program under that old glibc (``tasks.dlopen.smoke.smoke_sysroot``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tasks import profile as tp
from tasks.builder.docker_client import Docker, connect
from tasks.dlopen.sysroot import make_sysroot_from_debs
from tasks.errors import DockerError
from tasks.settings import Settings
from tasks.store import Store
from tests.support.debpool import fetch_debs
from tests.support.gpgkeys import Keys, session_keys

BULLSEYE_DEBS = ["libc6", "libc6-dev", "linux-libc-dev", "libgcc-s1"]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("COMPATBUILD_ONLINE") == "1":
        return
    skip = pytest.mark.skip(reason="needs the internet (upstream hosts, Docker Hub); set COMPATBUILD_ONLINE=1")
    for item in items:
        if "online" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def keys() -> Iterator[Keys]:
    """Real ed25519 GPG keys made for this session (tests/support/gpgkeys.py)."""
    with session_keys() as k:
        yield k


@pytest.fixture
def store(tmp_path: Path) -> Store:
    """An empty content-addressed store under the test's tmp_path."""
    s = Store(tmp_path / "cache")
    s.ensure()
    return s


@pytest.fixture(scope="session")
def docker_client() -> Iterator[Docker]:
    try:
        dk = connect()
    except DockerError as exc:
        pytest.fail(f"these tests need the Docker daemon: {exc}", pytrace=False)
    yield dk
    dk.client.close()


@pytest.fixture(scope="session")
def profile_cache() -> Path:
    return tp.default_cache_dir()


@pytest.fixture(scope="session")
def profile(tmp_path_factory: pytest.TempPathFactory, profile_cache: Path, docker_client: Docker) -> Path:
    """Root of a prepared profile: ``inputs/`` and ``rsrc.lock.toml``; builds the base image."""
    root = tmp_path_factory.mktemp("profile")
    tp.prepare_profile(root, cache=profile_cache, store=Store(profile_cache / "store"), dk=docker_client)
    return root


@pytest.fixture(scope="session")
def profile_lock(profile: Path) -> Path:
    return profile / "rsrc.lock.toml"


@pytest.fixture(scope="session")
def profile_settings(profile_lock: Path, profile_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Settings for the profile: a shared input store, a per-session output folder."""
    return Settings(lock=profile_lock, cache=profile_cache / "store", out=tmp_path_factory.mktemp("out"))


@pytest.fixture(scope="session")
def debs() -> list[Path]:
    """bullseye's glibc packages, downloaded once into the test profile's cache."""
    return fetch_debs(BULLSEYE_DEBS, tp.default_cache_dir() / "debs")


@pytest.fixture(scope="session")
def bullseye(debs: list[Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A sysroot of bullseye's glibc 2.31, made from ``debs``."""
    return make_sysroot_from_debs(debs, tmp_path_factory.mktemp("sysroots") / "bullseye")
