"""Build crates in the test profile's builder image and dlopen them in its smoke image.

The test profile (tasks.profile) is Debian bullseye, glibc 2.31: the real stage
Dockerfiles run on it, so ``build_crate`` links with the builder's clang + lld and the
library must load where a natively built one does not. Needs a Docker daemon and, on a
first run, deb.debian.org, PyPI and crates.io; stage images and downloads are cached.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import docker.errors
import pytest
from docker.models.containers import ContainerCollection

from tasks import pipeline
from tasks.backends.crate import inspect_crate
from tasks.backends.outputs import RECORD, BuildResult, last_build, target_dir
from tasks.builder import runner
from tasks.builder.docker_client import LABEL_PREFIX, WARM_LABEL, Docker
from tasks.builder.engine import Exec
from tasks.dlopen import smoke
from tasks.dlopen.smoke import SmokeResult
from tasks.elf.audit import audit_library, format_report
from tasks.errors import CargoError, CompatError, CrateError, OutputError, SmokeError
from tasks.inputs import lockfile
from tasks.inputs.lockfile import Lockfile
from tasks.settings import Settings
from tasks.store import Store

pytestmark = pytest.mark.docker

ROOT = Path(__file__).resolve().parents[2]
HELLO = ROOT / "examples" / "hello"
CRATES = Path(__file__).resolve().parents[1] / "crates"
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
    pipeline.image(dk, lock, profile_settings, "smoke", log=print, on_line=lambda _: None)
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
    return pipeline.build(dk, lock, settings, crate, log=lines.append, on_line=lines.append,
                          **kwargs)  # type: ignore[arg-type]


def smoke_in_image(dk: Docker, lock: Lockfile, store: Store, libraries: Sequence[Path],
                   **kwargs: object) -> list[SmokeResult]:
    """The harness run for real in the smoke image (no verdict cache: these tests load)."""
    settings = Settings(lock=lock.path, cache=store.root, out=store.root / "unused")
    tag = pipeline.image(dk, lock, settings, "smoke", log=lambda _: None, on_line=lambda _: None)
    return smoke.smoke_in_image(dk, lock, libraries, image=tag, **kwargs)  # type: ignore[arg-type]


def audit_ok(lib: Path, glibc: str) -> None:
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
    out = profile_settings.out / lock.target.name  # outputs are keyed by target
    assert result.libraries == (out / "libhello.so",)
    assert result.image_tag.startswith("compatbuild/builder:")
    assert any(line.strip().startswith("Compiling hello") for line in lines)  # streamed
    audit_ok(result.libraries[0], lock.target.glibc)

    [smoked] = smoke_in_image(dk, lock, store, result.libraries, log=lambda _: None,
                              on_line=None)
    assert "hello from compatbuild" in smoked.output
    assert "smoke: test returned" in smoked.output
    assert lock.target.glibc in smoked.where

    record = last_build(profile_settings.out, lock.target.name)
    assert record.libraries == result.libraries and record.image_tag == result.image_tag
    assert (out / RECORD).is_file()
    assert target_dir(profile_settings, lock, result.crate).parent == (
        profile_settings.cache / "targets" / lock.target.name)


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
    TIMINGS[f"container cold {name}"] = time.monotonic() - started
    assert [p.name for p in result.libraries] == [f"lib{name}.so"]
    audit_ok(result.libraries[0], lock.target.glibc)
    [smoked] = smoke_in_image(dk, lock, store, result.libraries, symbol="test",
                              log=lambda _: None, on_line=None)
    assert says in smoked.output


class Recording(Docker):
    """The real client, recording the command of every container it runs."""

    def __init__(self, dk: Docker) -> None:
        super().__init__(dk.client)
        self.commands: list[list[str]] = []
        self.warm = []  # the commands run by docker exec in a warm container

    def run_split(self, image: str, command: Sequence[str], **kwargs: Any) -> tuple[int, str, str]:
        self.commands.append(list(command))
        return super().run_split(image, command, **kwargs)

    def run(self, image: str, command: Sequence[str], **kwargs: Any) -> tuple[int, str]:
        self.commands.append(list(command))
        return super().run(image, command, **kwargs)

    def run_warm(self, image: str, command: Sequence[str], **kwargs: Any) -> tuple[int, str, str]:
        self.commands.append(list(command))
        self.warm.append(list(command))
        return super().run_warm(image, command, **kwargs)

    warm: list[list[str]]


def fake_host_cargo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A `cargo` first on PATH that logs its arguments and refuses to resolve or fetch."""
    real = shutil.which("cargo")
    log = tmp_path / "host-cargo.log"
    bindir = tmp_path / "bin"
    bindir.mkdir()
    script = bindir / "cargo"
    passthrough = f'exec "{real}" "$@"' if real else "exit 97"
    script.write_text(f'#!/bin/sh\necho "$@" >> "{log}"\n'
                      f'case "$1" in metadata) {passthrough};; *) exit 97;; esac\n')
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    return log


def test_registry_dependencies_are_resolved_by_the_images_cargo_not_the_hosts(
    dk: Docker, lock: Lockfile, store: Store, profile_settings: Settings, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    log = fake_host_cargo(tmp_path, monkeypatch)
    crate = copy_crate(CRATES / "with_dep", tmp_path)
    (crate / "Cargo.lock").unlink()  # nothing resolved yet: whoever fetches resolves
    settings = Settings(lock=profile_settings.lock, cache=tmp_path / "cache", out=tmp_path / "out")
    recording = Recording(dk)
    lines: list[str] = []
    result = build(recording, lock, store, settings, crate, lines)
    assert [c[:2] for c in recording.commands] == [["cargo", "fetch"], ["cargo", "build"]]
    host_calls = log.read_text().split("\n") if log.exists() else []
    assert not [c for c in host_calls if c and not c.startswith("metadata")], host_calls
    status, version = dk.run(result.image_tag, ["cargo", "--version"])
    assert "itoa" in (crate / "Cargo.lock").read_text()  # written by the image's cargo
    assert status == 0 and version.strip()
    [smoked] = smoke_in_image(dk, lock, store, result.libraries, log=lambda _: None, on_line=None)
    assert "with_dep formats 20180" in smoked.output


def test_an_unchanged_crate_is_not_fetched_again_and_a_changed_manifest_is(
    dk: Docker, lock: Lockfile, store: Store, profile_settings: Settings, tmp_path: Path,
) -> None:
    crate = copy_crate(CRATES / "with_dep", tmp_path)
    settings = Settings(lock=profile_settings.lock, cache=tmp_path / "cache", out=tmp_path / "out")
    recording = Recording(dk)
    build(recording, lock, store, settings, crate, [])
    assert [c[:2] for c in recording.commands] == [["cargo", "fetch"], ["cargo", "build"]]
    src = crate / "src" / "lib.rs"
    src.write_text(src.read_text() + "\n// a source changed, the manifests did not\n")
    recording.commands.clear()
    build(recording, lock, store, settings, crate, [])
    assert [c[:2] for c in recording.commands] == [["cargo", "build"]]  # the stamp: no fetch
    manifest = crate / "Cargo.toml"
    manifest.write_text(manifest.read_text() + "\n# a changed manifest may change the resolve\n")
    recording.commands.clear()
    build(recording, lock, store, settings, crate, [])
    assert [c[:2] for c in recording.commands] == [["cargo", "fetch"], ["cargo", "build"]]


def test_a_build_with_nothing_changed_runs_no_container_and_a_touched_source_builds_again(
    dk: Docker, lock: Lockfile, store: Store, profile_settings: Settings, tmp_path: Path,
) -> None:
    crate = copy_crate(CRATES / "uses_common", tmp_path)
    common = copy_crate(CRATES / "common", tmp_path)
    settings = Settings(lock=profile_settings.lock, cache=profile_settings.cache, out=tmp_path / "out")
    recording = Recording(dk)
    first = build(recording, lock, store, settings, crate, [])
    recording.commands.clear()
    lines: list[str] = []
    again = build(recording, lock, store, settings, crate, lines)
    assert recording.commands == [] and lines == []  # up to date: no container, nothing said
    assert again.libraries == first.libraries
    assert last_build(settings.out, lock.target.name).libraries == first.libraries
    assert first.fixups[0].changed and again.fixups == first.fixups  # what the build that made the copy said
    assert format_report(again.audits) == format_report(first.audits)

    source = common / "src" / "lib.rs"
    os.utime(source, ns=(time.time_ns(), time.time_ns() + 10**9))  # a touch: new mtime, same bytes
    touched = build(recording, lock, store, settings, crate, lines)
    assert recording.commands == [] and lines == []  # sources are judged by their bytes
    assert touched.fixups == first.fixups  # the new stamp keeps the report of the copy's build
    assert build(recording, lock, store, settings, crate, lines).fixups == first.fixups
    before = source.read_text()
    st = source.stat()
    source.write_text(before.replace("hello from ../common", "HELLO FROM ../common"))  # same size
    os.utime(source, ns=(st.st_atime_ns, st.st_mtime_ns))  # mtime put back: the ctime still moved
    build(recording, lock, store, settings, crate, lines)
    assert [c[:2] for c in recording.commands] == [["cargo", "build"]]
    recording.commands.clear()
    source.write_text(before)

    # a path package outside the workspace is an input too
    source.write_text(source.read_text().replace("hello from ../common", "changed in ../common"))
    build(recording, lock, store, settings, crate, lines)
    assert [c[:2] for c in recording.commands] == [["cargo", "build"]]
    assert any("Compiling common" in line for line in lines), lines
    assert b"changed in ../common" in first.libraries[0].read_bytes()

    recording.commands.clear()
    first.libraries[0].write_bytes(b"not the library any more")  # a damaged copy is rebuilt
    build(recording, lock, store, settings, crate, [])
    assert [c[:2] for c in recording.commands] == [["cargo", "build"]]
    assert first.libraries[0].read_bytes().startswith(b"\x7fELF")


def test_path_dependency_outside_the_workspace_is_mounted_and_builds(
    dk: Docker, lock: Lockfile, store: Store, profile_settings: Settings, tmp_path: Path,
) -> None:
    crate = copy_crate(CRATES / "uses_common", tmp_path)
    common = copy_crate(CRATES / "common", tmp_path)
    assert inspect_crate(crate).workspace_root == crate  # common is outside the workspace
    before = {p: p.read_bytes() for p in common.rglob("*") if p.is_file()}
    lines: list[str] = []
    result = build(dk, lock, store, profile_settings, crate, lines, out=tmp_path / "out")
    assert any("Compiling common" in line for line in lines), lines
    audit_ok(result.libraries[0], lock.target.glibc)
    [smoked] = smoke_in_image(dk, lock, store, result.libraries, symbol="test",
                              log=lambda _: None, on_line=None)
    assert "uses_common says hello from ../common" in smoked.output
    assert {p: p.read_bytes() for p in common.rglob("*") if p.is_file()} == before  # read-only


def test_builds_for_two_targets_from_one_checkout_do_not_collide(
    dk: Docker, profile_settings: Settings, tmp_path: Path,
) -> None:
    crate = copy_crate(HELLO, tmp_path)
    other_path = tmp_path / "other.lock.toml"
    text = profile_settings.lock.read_text()
    first = lockfile.load(profile_settings.lock)
    other_path.write_text(text.replace(f'name = "{first.target.name}"', 'name = "other-target"', 1))
    other = lockfile.load(other_path)
    assert other.target.name == "other-target"
    settings = Settings(lock=profile_settings.lock, cache=profile_settings.cache, out=tmp_path / "out")
    a = build(dk, first, Store(settings.cache), settings, crate, [])
    b = build(dk, other, Store(settings.cache), settings, crate, [])
    assert a.libraries == (settings.out / first.target.name / "libhello.so",)
    assert b.libraries == (settings.out / "other-target" / "libhello.so",)
    assert target_dir(settings, first, a.crate) != target_dir(settings, other, b.crate)
    assert last_build(settings.out, "other-target").libraries == b.libraries
    assert last_build(settings.out, first.target.name).libraries == a.libraries
    with pytest.raises(OutputError, match="holds builds for"):
        last_build(settings.out)  # which one? the caller must say


def test_smoke_verdict_is_cached_for_the_same_library_and_rerun_when_it_changes(
    hello_build: tuple[BuildResult, list[str]], dk: Docker, lock: Lockfile, tmp_path: Path,
    profile_settings: Settings,
) -> None:
    lib = tmp_path / "libhello.so"
    shutil.copyfile(hello_build[0].libraries[0], lib)
    settings = Settings(lock=profile_settings.lock, cache=tmp_path / "cache", out=tmp_path / "out")
    recording = Recording(dk)

    def run() -> tuple[list[str], list[SmokeResult]]:
        said: list[str] = []
        recording.commands.clear()
        return said, pipeline.smoke(recording, lock, settings, [lib], log=said.append, on_line=None)

    said, [first] = run()
    assert len(recording.commands) == 1 and "hello from compatbuild" in first.output
    assert not any("cached" in s for s in said)
    said, [again] = run()
    assert recording.commands == []  # no container
    assert any(s.startswith("Using cached smoke result for libhello.so") for s in said)
    assert again.output == first.output and again.ok
    with lib.open("ab") as f:  # other bytes (still a loadable ELF): the harness runs again
        f.write(b"\0")
    said, [changed] = run()
    assert len(recording.commands) == 1 and changed.ok
    assert not any("cached" in s for s in said)
    said, _ = run()
    assert any("cached" in s for s in said)
    with pytest.raises(SmokeError):  # a different symbol is a different verdict
        pipeline.smoke(recording, lock, settings, [lib], symbol="missing_fn",
                       log=lambda _: None, on_line=None)


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


# ----------------------------------------------------------------------------- the warm build container


def _warm_containers(dk: Docker) -> list[Any]:
    """The running warm containers, each inspected; one that idles out (--rm) meanwhile is left out."""
    found = []
    for listed in dk.client.api.containers(filters={"label": [WARM_LABEL]}):
        try:
            found.append(dk.client.containers.get(listed["Id"]))
        except docker.errors.NotFound:
            continue
    return found


def _execs(dk: Docker, container: str, since: float) -> list[str]:
    """The cargo commands ``docker exec`` ran in ``container`` from ``since`` (epoch seconds) until now."""
    events = dk.client.events(since=f"{since:.6f}", until=f"{time.time() + 0.5:.6f}", decode=True,
                              filters={"container": container, "event": "exec_create"})
    return [action for e in events if "cargo" in (action := str(e.get("Action", "")))]


def test_a_warm_container_whose_runner_does_not_listen_still_builds_by_docker_exec(
    dk: Docker, lock: Lockfile, store: Store, profile_settings: Settings, tmp_path: Path,
) -> None:
    """A container made before the runner, or whose runner died, leaves a FIFO nobody reads: exec, as before."""
    crate = copy_crate(HELLO, tmp_path)
    settings = dataclasses.replace(profile_settings, out=tmp_path / "out")
    build(dk, lock, store, settings, crate, [])
    home = target_dir(settings, lock, inspect_crate(crate)) / runner.HOME
    [wake] = list(home.glob("*.wake"))
    [warm] = [c for c in _warm_containers(dk) if wake.name.startswith(c.name)]
    wake.unlink()  # the runner keeps reading the one it made
    os.mkfifo(wake)  # a FIFO without a reader: opening it to write fails at once (ENXIO)
    source = crate / "src" / "lib.rs"
    source.write_text(source.read_text() + "\n// an edit\n")
    since = time.time()
    again = build(dk, lock, store, settings, crate, [])
    assert again.libraries[0].read_bytes().startswith(b"\x7fELF")
    assert len(_execs(dk, warm.id, since)) == 1
    assert not [p for p in home.iterdir() if p.is_dir()]


def test_a_runner_that_does_not_begin_a_request_is_not_used_and_its_folder_is_gone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    spec = Exec.of("compatbuild-warm-test", ["true"], user="0:0", working_dir="/", environment={"A": "b c"})
    assert runner.start(spec, tmp_path) is None  # no runner at all
    home = tmp_path / runner.HOME
    home.mkdir()
    wake = home / f"{spec.container}.wake"
    os.mkfifo(wake)
    reader = os.open(wake, os.O_RDONLY | os.O_NONBLOCK)  # someone reads, and never begins anything
    try:
        monkeypatch.setattr(runner, "ACK_DEADLINE", 0.2)
        assert runner.start(spec, tmp_path) is None
        assert os.read(reader, 100).strip().isalnum()  # it was asked, once
    finally:
        os.close(reader)
    assert [p.name for p in home.iterdir()] == [wake.name]
    stale = home / "0123abcd"
    stale.mkdir()
    (stale / "owner").write_text("999999999\n")  # a build killed before it removed its request
    monkeypatch.setattr(runner, "ACK_DEADLINE", 0.01)
    os.close(os.open(wake, os.O_RDONLY | os.O_NONBLOCK))
    reader = os.open(wake, os.O_RDONLY | os.O_NONBLOCK)
    try:
        runner.start(spec, tmp_path)
    finally:
        os.close(reader)
    assert not stale.exists()
    starting, lost = home / "4567cdef", home / "89abcdef"
    starting.mkdir()  # a build that has not written its owner yet: left alone
    lost.mkdir()
    os.utime(lost, (time.time() - runner.STALE - 60,) * 2)  # no owner, and a day old: removed
    monkeypatch.setattr(runner, "ACK_DEADLINE", 30.0)
    reader = os.open(wake, os.O_RDONLY | os.O_NONBLOCK)
    threading.Timer(0.2, wake.unlink).start()  # the container stops: its PID 1 removes the FIFO
    began = time.monotonic()
    try:
        assert runner.start(spec, tmp_path) is None
    finally:
        os.close(reader)
    assert time.monotonic() - began < 5  # not the whole deadline
    assert starting.exists() and not lost.exists()
    assert runner.command_script(spec) == "cd / || exit 127\nexec env 'A=b c' true\n"


def test_builds_exec_in_one_warm_container_that_stops_itself_when_idle(
    dk: Docker, lock: Lockfile, store: Store, profile_settings: Settings, tmp_path: Path,
) -> None:
    crate = copy_crate(HELLO, tmp_path)
    settings = dataclasses.replace(profile_settings, out=tmp_path / "out", warm_idle=4)
    recording = Recording(dk)
    before = {c.id for c in _warm_containers(dk)}
    first = build(recording, lock, store, settings, crate, [])
    assert [c[:2] for c in recording.warm] == [["cargo", "build"]]
    [warm] = [c for c in _warm_containers(dk) if c.id not in before]
    assert warm.labels[f"{LABEL_PREFIX}.project"] == "compatbuild"
    assert warm.attrs["Config"].get("NetworkDisabled") is True
    source = crate / "src" / "lib.rs"
    edited = "compatbuild, rebuilt by docker exec in its warm container"  # long: kept in .rodata as is
    source.write_text(source.read_text().replace('"compatbuild"', f'"{edited}"'))  # an edit: cargo runs again
    recording.commands.clear()
    since = time.time()
    again = build(recording, lock, store, settings, crate, [])
    assert [c[:2] for c in recording.warm[1:]] == [["cargo", "build"]]
    assert [c for c in recording.commands if c not in recording.warm] == []  # no new container
    assert _execs(dk, warm.id, since) == []  # begun by the container's resident runner, not docker exec
    assert not [p for p in (target_dir(settings, lock, inspect_crate(crate)) / runner.HOME).iterdir()
                if p.is_dir()]  # each build removes its request folder
    assert {c.id for c in _warm_containers(dk)} - before == {warm.id}
    assert again.libraries == first.libraries and edited.encode() in first.libraries[0].read_bytes()
    audit_ok(first.libraries[0], lock.target.glibc)
    deadline = time.monotonic() + 60
    while warm.id in {c["Id"] for c in dk.client.api.containers(all=True, filters={"label": [WARM_LABEL]})}:
        assert time.monotonic() < deadline, "the warm container did not stop after its idle time"
        time.sleep(1)  # it stops itself after 4 s without an exec, and removes itself


def test_a_warm_container_of_the_slot_that_vanishes_while_listed_does_not_fail_the_build(
    dk: Docker, lock: Lockfile, store: Store, profile_settings: Settings, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Another key's container of the same crate and target idling out (--rm) between the listing
    and its inspect: docker-py's full listing raised its 404 as the build's error."""
    crate = copy_crate(HELLO, tmp_path)
    settings = dataclasses.replace(profile_settings, out=tmp_path / "out")
    first = build(dk, lock, store, settings, crate, [])
    [warm] = [c for c in _warm_containers(dk) if str(crate) in str(c.attrs["Mounts"])]
    slot = warm.labels[f"{WARM_LABEL}.slot"]
    other = dk.client.containers.run(warm.image.id, ["sleep", "600"], detach=True, auto_remove=True,
                                     labels={f"{LABEL_PREFIX}.project": "compatbuild", WARM_LABEL: "another key",
                                             f"{WARM_LABEL}.slot": slot})
    get = ContainerCollection.get

    def vanished(self: ContainerCollection, ref: str) -> Any:
        if ref == other.id:
            raise docker.errors.NotFound(f"No such container: {ref}")
        return get(self, ref)

    monkeypatch.setattr(ContainerCollection, "get", vanished)
    source = crate / "src" / "lib.rs"
    source.write_text(source.read_text() + "\n// an edit\n")
    again = build(dk, lock, store, settings, crate, [])
    assert again.libraries == first.libraries
    monkeypatch.undo()
    assert other.id not in {c["Id"] for c in dk.client.api.containers(all=True)}  # a stale key's: stopped


def test_no_warm_builds_in_a_new_container_and_a_rebuild_after_idle_makes_a_new_one(
    dk: Docker, lock: Lockfile, store: Store, profile_settings: Settings, tmp_path: Path,
) -> None:
    crate = copy_crate(HELLO, tmp_path)
    cold = dataclasses.replace(profile_settings, out=tmp_path / "out", warm_idle=0)
    recording = Recording(dk)
    build(recording, lock, store, cold, crate, [])
    assert recording.warm == [] and [c[:2] for c in recording.commands if c[:2] == ["cargo", "build"]]
    assert not [c for c in _warm_containers(dk) if c.labels.get(f"{WARM_LABEL}.slot") and
                str(crate) in str(c.attrs["Mounts"])]


def test_a_target_dir_removed_between_builds_gets_a_new_warm_container(
    dk: Docker, lock: Lockfile, store: Store, profile_settings: Settings, tmp_path: Path,
) -> None:
    """A bind mount holds the folder, not its path: after `rm -rf` of the target dir the old
    warm container would write into the deleted folder (cargo: failed to create /target/release)."""
    crate = copy_crate(HELLO, tmp_path)
    settings = dataclasses.replace(profile_settings, out=tmp_path / "out")
    first = build(dk, lock, store, settings, crate, [])
    shutil.rmtree(target_dir(settings, lock, inspect_crate(crate)))  # a wiped cache, the warm container alive
    again = build(dk, lock, store, settings, crate, [])
    assert again.libraries == first.libraries and first.libraries[0].read_bytes().startswith(b"\x7fELF")


def test_the_warm_key_follows_the_image_the_mounts_the_user_and_the_network() -> None:
    from tasks.builder.docker_client import _warm_key

    vols = {"/a": {"bind": "/a", "mode": "rw"}}
    key = _warm_key("sha256:1", vols, "0:0", True)
    assert key == _warm_key("sha256:1", dict(vols), "0:0", True)
    assert len({key, _warm_key("sha256:2", vols, "0:0", True), _warm_key("sha256:1", {}, "0:0", True),
                _warm_key("sha256:1", vols, "1:1", True), _warm_key("sha256:1", vols, "0:0", False)}) == 5
