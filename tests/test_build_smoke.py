"""Build crates in the test profile's builder image and dlopen them in its smoke image.

The test profile (tests.profile) is Debian bullseye, glibc 2.31: the real stage
Dockerfiles run on it, so ``build_crate`` links with the builder's clang + lld and the
library must load where a natively built one does not. Needs a Docker daemon and, on a
first run, deb.debian.org, PyPI and crates.io; stage images and downloads are cached.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tasks import pipeline
from tasks.crates.build import RECORD, BuildResult, build_crate, last_build
from tasks.crates.smoke import smoke_in_image
from tasks.errors import CargoError, CompatError, CrateError, SmokeError
from tasks.image.docker_client import Docker
from tasks.inputs import lockfile
from tasks.inputs.lockfile import Lockfile
from tasks.settings import Settings
from tasks.store import Store

pytestmark = pytest.mark.docker

ROOT = Path(__file__).resolve().parent.parent
HELLO = ROOT / "examples" / "hello"
CRATES = Path(__file__).resolve().parent / "crates"
TIMINGS: dict[str, float] = {}


# ----------------------------------------------------------------------------- fixtures
# docker_client, profile_lock and profile_settings come from tests/conftest.py.


@pytest.fixture(scope="session")
def dk(docker_client: Docker) -> Docker:
    return docker_client


@pytest.fixture(scope="session")
def lock(profile_settings: Settings) -> Lockfile:
    return lockfile.load(profile_settings.lock)


@pytest.fixture(scope="session")
def store(profile_settings: Settings) -> Store:
    return Store(profile_settings.cache)


@pytest.fixture(scope="session")
def hello_build(
    dk: Docker, lock: Lockfile, store: Store, profile_settings: Settings,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[BuildResult, list[str]]]:
    pipeline.image(dk, lock, profile_settings, "builder", log=print, on_line=lambda _: None)
    crate = copy_crate(HELLO, tmp_path_factory.mktemp("crates"))  # a new path: a new target
    lines: list[str] = []
    started = time.monotonic()
    result = build(dk, lock, store, profile_settings, crate, lines)
    TIMINGS["container cold hello (images exist)"] = time.monotonic() - started
    yield result, lines


def copy_crate(src: Path, dest_parent: Path) -> Path:
    dest = dest_parent / src.name
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns("target"))
    return dest


def build(dk: Docker, lock: Lockfile, store: Store, settings: Settings, crate: Path,
          lines: list[str], **kwargs: object) -> BuildResult:
    return build_crate(dk, lock, store, settings, crate, log=lines.append, on_line=lines.append,
                       **kwargs)  # type: ignore[arg-type]


def audit_ok(lib: Path, glibc: str) -> None:
    try:
        from tasks.crates.audit import audit_library, format_report
    except ImportError:  # audit is written alongside; the smoke test still proves loading
        return
    audit = audit_library(lib, target_glibc=glibc)
    assert audit.ok, format_report([audit])
    assert not audit.absolute_needed


@pytest.fixture(scope="module", autouse=True)
def report_timings() -> Iterator[None]:
    """Print the measured build times at the end (seen with -s); nothing asserts on them."""
    yield
    for what, seconds in TIMINGS.items():
        print(f"\ntiming: {what}: {seconds:.1f}s", end="")


# ----------------------------------------------------------------------------- tests


def test_example_builds_audit_clean_and_loads_on_the_old_glibc(
    hello_build: tuple[BuildResult, list[str]], dk: Docker, lock: Lockfile, store: Store,
    profile_settings: Settings,
) -> None:
    result, lines = hello_build
    out = profile_settings.out
    assert result.libraries == (out / "libhello.so",)
    assert result.image_tag.startswith("compatbuild/builder:")
    assert any(line.strip().startswith("Compiling hello") for line in lines)  # streamed
    audit_ok(result.libraries[0], lock.target.glibc)

    [smoked] = smoke_in_image(dk, lock, store, result.libraries, log=lambda _: None,
                              on_line=None)
    assert "hello from compatbuild" in smoked.output
    assert "smoke: test returned" in smoked.output
    assert lock.target.glibc in smoked.where

    record = last_build(out)
    assert record.libraries == result.libraries and record.image_tag == result.image_tag
    assert (out / RECORD).is_file()


def test_native_build_of_the_same_crate_fails_in_the_image(
    dk: Docker, lock: Lockfile, store: Store, tmp_path: Path
) -> None:
    if shutil.which("cargo") is None:
        pytest.fail("needs cargo on the host (rustup)", pytrace=False)
    crate = copy_crate(HELLO, tmp_path)
    started = time.monotonic()
    subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=crate, check=True,
                   env={**os.environ, "CARGO_TARGET_DIR": str(tmp_path / "target")})
    TIMINGS["native cold"] = time.monotonic() - started
    started = time.monotonic()
    subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=crate, check=True,
                   env={**os.environ, "CARGO_TARGET_DIR": str(tmp_path / "target")})
    TIMINGS["native warm"] = time.monotonic() - started
    native = tmp_path / "target" / "release" / "libhello.so"
    with pytest.raises(SmokeError) as err:
        smoke_in_image(dk, lock, store, [native], log=lambda _: None, on_line=None)
    message = str(err.value)
    assert "GLIBC_2.3" in message and "not found" in message and "\n" not in message


def test_second_build_of_an_unchanged_crate_is_fresh(
    hello_build: tuple[BuildResult, list[str]], dk: Docker, lock: Lockfile, store: Store,
    profile_settings: Settings,
) -> None:
    first, _ = hello_build
    before = first.libraries[0].read_bytes()
    lines: list[str] = []
    started = time.monotonic()
    again = build(dk, lock, store, profile_settings, first.crate.root, lines)
    TIMINGS["container warm"] = time.monotonic() - started
    assert again.libraries == first.libraries
    assert again.libraries[0].read_bytes() == before
    assert not any("Compiling" in line for line in lines), lines  # nothing recompiled
    assert not any(line.startswith("Building stage") for line in lines)


@pytest.mark.parametrize(
    ("name", "says"),
    [("with_dep", "with_dep formats 20180"), ("with_cc", "with_cc greets glibc (5 chars) [")],
)
def test_crates_with_registry_and_cc_dependencies_build_and_load(
    name: str, says: str, dk: Docker, lock: Lockfile, store: Store,
    profile_settings: Settings, tmp_path: Path,
) -> None:
    crate = copy_crate(CRATES / name, tmp_path)
    lines: list[str] = []
    started = time.monotonic()
    result = build(dk, lock, store, profile_settings, crate, lines, out=tmp_path / "out")
    TIMINGS[f"container cold {name} (host fetch)"] = time.monotonic() - started
    assert [p.name for p in result.libraries] == [f"lib{name}.so"]
    audit_ok(result.libraries[0], lock.target.glibc)
    [smoked] = smoke_in_image(dk, lock, store, result.libraries, symbol="test",
                              log=lambda _: None, on_line=None)
    assert says in smoked.output


def test_dependencies_are_fetched_in_the_container_without_host_cargo(
    dk: Docker, lock: Lockfile, store: Store, profile_settings: Settings, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    host_cargo = shutil.which("cargo")
    if host_cargo:
        path = [p for p in os.environ["PATH"].split(os.pathsep)
                if Path(p).resolve() != Path(host_cargo).parent.resolve()]
        monkeypatch.setenv("PATH", os.pathsep.join(path))
    assert shutil.which("cargo") is None
    crate = copy_crate(CRATES / "with_dep", tmp_path)
    settings = Settings(lock=profile_settings.lock, cache=tmp_path / "cache",
                        out=tmp_path / "out")  # an empty cargo-home: itoa must be fetched
    lines: list[str] = []
    started = time.monotonic()
    result = build(dk, lock, Store(settings.cache), settings, crate, lines)
    TIMINGS["container cold with_dep (fetch in container, inputs re-copied)"] = (
        time.monotonic() - started)
    assert any("Downloaded itoa" in line or "Downloading" in line for line in lines), lines
    assert (settings.cache / "cargo-home" / "registry" / "cache").is_dir()
    [smoked] = smoke_in_image(dk, lock, store, result.libraries, log=lambda _: None,
                              on_line=None)
    assert "with_dep formats 20180" in smoked.output


def test_plain_lib_is_refused_before_anything_is_built(
    dk: Docker, lock: Lockfile, store: Store, profile_settings: Settings
) -> None:
    lines: list[str] = []
    with pytest.raises(CrateError, match='crate-type = \\["cdylib"\\]'):
        build(dk, lock, store, profile_settings, CRATES / "no_cdylib", lines)
    assert lines == []


def test_compile_error_is_a_cargo_error_with_cargos_words(
    dk: Docker, lock: Lockfile, store: Store, profile_settings: Settings, tmp_path: Path
) -> None:
    crate = copy_crate(CRATES / "broken", tmp_path)
    lines: list[str] = []
    with pytest.raises(CargoError) as err:
        build(dk, lock, store, profile_settings, crate, lines, out=tmp_path / "out")
    message = str(err.value)
    assert "mismatched types" in message and "could not compile `broken`" in message, message
    assert "\n" not in message
    assert any("expected `u32`, found `&str`" in line for line in lines)  # cargo's own output
    assert not (tmp_path / "out").exists()


def test_missing_symbol_is_a_smoke_error_naming_dlsym(
    hello_build: tuple[BuildResult, list[str]], dk: Docker, lock: Lockfile, store: Store
) -> None:
    result, _ = hello_build
    with pytest.raises(SmokeError, match=r"dlsym missing_fn in /libs/libhello\.so: .*undefined"):
        smoke_in_image(dk, lock, store, result.libraries, symbol="missing_fn",
                       log=lambda _: None, on_line=None)


def test_last_build_without_a_record_says_build_first(tmp_path: Path) -> None:
    with pytest.raises(CompatError, match="run `invoke build` first"):
        last_build(tmp_path)
