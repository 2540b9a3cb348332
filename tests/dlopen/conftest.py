"""Session fixtures of the smoke tests: plugin crates built once by the zig backend, the profile's smoke image.

Each crate under tests/crates is copied out of the checkout and built for centos7's glibc
2.17 (no Docker), once per session; the tests that load them share the libraries.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tasks import pipeline
from tasks.builder.docker_client import Docker
from tasks.inputs import lockfile
from tasks.settings import PROJECT_ROOT, Settings

LOCK = PROJECT_ROOT / "rsrc.lock.toml"
CRATES = PROJECT_ROOT / "tests" / "crates"


def quiet(_line: str) -> None:
    pass


@pytest.fixture(scope="session")
def shared(profile_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """The real lockfile's zig backend, its inputs in the test profile's shared store."""
    return Settings(lock=LOCK, cache=profile_cache / "store", out=tmp_path_factory.mktemp("host-out"),
                    progress="never", backend="zig")


@pytest.fixture(scope="session")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("host-cache")


def zig_build(shared: Settings, tmp_path_factory: pytest.TempPathFactory, name: str) -> Path:
    """tests/crates/<name> built by the zig backend for centos7 (glibc 2.17): its one library."""
    crate = tmp_path_factory.mktemp("crates") / name
    shutil.copytree(CRATES / name, crate, ignore=shutil.ignore_patterns("target"))
    [lib] = pipeline.build(None, lockfile.load(LOCK, "centos7"), shared, crate, log=quiet, on_line=quiet).libraries
    return lib


@pytest.fixture(scope="session")
def zig_host_api(shared: Settings, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """host_api: leaves host_add (a function) and host_base (a static) to its host."""
    return zig_build(shared, tmp_path_factory, "host_api")


@pytest.fixture(scope="session")
def zig_pyo3(shared: Settings, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A pyo3 0.24 abi3 extension module (from the crate registry): ``import mymod``."""
    return zig_build(shared, tmp_path_factory, "pyo3_mod")


@pytest.fixture(scope="session")
def smoke_image(docker_client: Docker, profile_lock: Path, profile_settings: Settings) -> str:
    """The test profile's smoke image (bullseye's glibc 2.31, python3.9, lua5.1, sqlite3): its tag."""
    return pipeline.image(docker_client, lockfile.load(profile_lock), profile_settings, "smoke", log=quiet,
                          on_line=quiet)


@pytest.fixture(scope="session")
def zig_luamod(shared: Settings, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An mlua 0.12 Lua 5.1 module (module mode, from the crate registry): ``require("luamod")``."""
    return zig_build(shared, tmp_path_factory, "mlua_mod")


@pytest.fixture(scope="session")
def zig_sqlext(shared: Settings, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A rusqlite 0.40 SQLite loadable extension (from the crate registry): ``.load``, ``select half(8)``."""
    return zig_build(shared, tmp_path_factory, "sqlite_ext")
