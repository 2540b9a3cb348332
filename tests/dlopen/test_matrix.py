"""`invoke smoke --matrix`, and the sysroot harness linked against the sysroot alone.

The matrix runs on real glibcs without Docker: bullseye's 2.31, bookworm's 2.36 and
trixie's 2.41 from the .debs the lockfile pins (fetched by the normal download path into the
test profile's shared store), and this machine's. A library built here by plain cargo (glibc
2.36) fails on bullseye with the loader's own words and loads on bookworm, trixie and the host; one built by
the zig backend for 2.17 loads everywhere. Fedora 20 and CentOS 7 pin no RPMs here: "not
pinned", not a failure.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tasks import pipeline
from tasks.dlopen import matrix
from tasks.dlopen.harness import HARNESS_C, compile_harness
from tasks.inputs import lockfile
from tasks.settings import PROJECT_ROOT, Settings

LOCK = PROJECT_ROOT / "rsrc.lock.toml"
HELLO = PROJECT_ROOT / "examples" / "hello"
NOT_FOUND = re.compile(r"version `GLIBC_2\.3[2-6]' not found")


def quiet(_line: str) -> None:
    pass


@pytest.fixture(scope="session")
def shared(profile_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(lock=LOCK, cache=profile_cache / "store", out=tmp_path_factory.mktemp("matrix-out"),
                    progress="never", backend="zig")


@pytest.fixture(scope="session")
def host_hello(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """examples/hello built by this machine's cargo, against this machine's glibc 2.36."""
    target = tmp_path_factory.mktemp("native-target")
    subprocess.run(["cargo", "build", "--release", "--quiet", "--manifest-path", str(HELLO / "Cargo.toml")],
                   env={**os.environ, "CARGO_TARGET_DIR": str(target)}, check=True)
    lib = target / "release" / "libhello.so"
    return shutil.copy(lib, target / "libhello_host.so")


@pytest.fixture(scope="session")
def zig_hello(shared: Settings) -> Path:
    lock = lockfile.load(LOCK, "centos7")
    [lib] = pipeline.build(None, lock, shared, HELLO, log=quiet, on_line=quiet).libraries
    return lib


# ----------------------------------------------------------------------------- the harness link


def _outside(trace: list[str], root: Path) -> list[str]:
    """Files the linker opened outside ``root``, leaving out gcc's own temporary object."""
    return [p for p in trace if not Path(p).resolve().is_relative_to(root.resolve())
            and not re.fullmatch(r"/tmp/cc\w+\.o", p)]


def test_sysroot_harness_links_only_the_sysroots_crt_files_and_libc(bullseye: Path, tmp_path: Path) -> None:
    trace: list[str] = []
    harness = compile_harness(tmp_path, sysroot=bullseye, trace=trace)
    assert harness.is_file()
    opened = [Path(p).name for p in trace]
    for name in ("crt1.o", "crti.o", "crtn.o", "libc.so.6", "libdl.so.2"):
        assert name in opened, (name, trace)
    assert _outside(trace, bullseye) == []
    needed = subprocess.run(["readelf", "-d", str(harness)], capture_output=True, text=True, check=True).stdout
    assert "libc.so.6" in needed and "/" not in "".join(re.findall(r"\[(.*?)\]", needed))


def test_gcc_sysroot_alone_takes_the_hosts_crt_files(bullseye: Path, tmp_path: Path) -> None:
    """Why the harness spells its link out: the old `gcc --sysroot` link opened host files."""
    proc = subprocess.run(["gcc", f"--sysroot={bullseye}", "-Wl,-t", "-o", str(tmp_path / "h"), str(HARNESS_C),
                           "-ldl"], capture_output=True, text=True, check=False)
    trace = [ln.strip() for ln in proc.stdout.splitlines() if ln.strip()]
    assert proc.returncode == 0, proc.stderr
    outside = _outside(trace, bullseye)
    assert any(p.endswith("/crti.o") for p in outside) and "/lib/x86_64-linux-gnu/libc.so.6" in outside, trace


# ----------------------------------------------------------------------------- the matrix


def test_matrix_over_bullseye_bookworm_trixie_and_the_host(shared: Settings, host_hello: Path,
                                                            zig_hello: Path) -> None:
    lock = lockfile.load(LOCK, "centos7")
    cells = pipeline.smoke_matrix(None, lock, shared, [zig_hello, host_hello], log=quiet)
    by = {(c.place.name, c.library.name): c for c in cells}
    for place in ("bullseye", "bookworm", "trixie", "this machine"):
        assert by[(place, "libhello.so")].loaded is True, by[(place, "libhello.so")]
    assert by[("bullseye", "libhello.so")].place.glibc == "2.31"
    assert by[("bookworm", "libhello.so")].place.glibc == "2.36"
    assert by[("trixie", "libhello.so")].place.glibc == "2.41"  # the newest glibc too
    bad = by[("bullseye", "libhello_host.so")]
    assert bad.loaded is False and NOT_FOUND.search(bad.text), bad.text
    assert by[("bookworm", "libhello_host.so")].loaded is True
    assert by[("trixie", "libhello_host.so")].loaded is True
    assert by[("this machine", "libhello_host.so")].loaded is True
    for target in ("fedora20", "centos7"):
        assert by[(target, "libhello.so")].loaded is None
        assert by[(target, "libhello.so")].text == "not pinned"
    assert by[("centos7 image", "libhello.so")].text == "no Docker"
    assert matrix.failed(cells) == [bad]
    glibcs = [c.place.glibc for c in cells]
    assert glibcs == sorted(glibcs, key=lambda g: tuple(map(int, g.split("."))))  # oldest first

    text = matrix.table(cells)
    assert text.splitlines()[0] == "| glibc | where | libhello.so | libhello_host.so |"
    assert "| 2.31 | bullseye (sysroot) | loaded | " in text and "not found" in text


def test_smoke_matrix_cli_json_and_exit_code(shared: Settings, host_hello: Path, zig_hello: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INVOKE_COMPATBUILD_")}
    env.update(DOCKER_HOST="unix:///nonexistent", INVOKE_COMPATBUILD_CACHE=str(shared.cache))
    run = [sys.executable, "-m", "invoke", "smoke", "--matrix", "--json", "--target", "centos7"]
    ok = subprocess.run([*run, "--lib", str(zig_hello)], cwd=PROJECT_ROOT, env=env, capture_output=True,
                        text=True, timeout=300)
    assert ok.returncode == 0, ok.stderr
    cells = json.loads(ok.stdout)["cells"]
    assert {(c["place"], c["loaded"]) for c in cells} >= {("bullseye", True), ("bookworm", True),
                                                          ("fedora20", None), ("this machine", True)}
    bad = subprocess.run([*run, "--lib", str(host_hello)], cwd=PROJECT_ROOT, env=env, capture_output=True,
                         text=True, timeout=300)
    assert bad.returncode == 11
    [line] = bad.stderr.strip().splitlines()
    assert "libhello_host.so failed on bullseye (glibc 2.31)" in line and NOT_FOUND.search(line)


@pytest.mark.docker
def test_matrix_includes_the_target_image_when_docker_is_there(
    docker_client: object, profile_lock: Path, profile_settings: Settings, zig_hello: Path
) -> None:
    from tasks.builder.docker_client import Docker

    assert isinstance(docker_client, Docker)
    lock = lockfile.load(profile_lock)
    cells = pipeline.smoke_matrix(docker_client, lock, profile_settings, [zig_hello], log=quiet)
    image = next(c for c in cells if c.place.how == "container")
    assert image.place.name == f"{lock.target.name} image" and image.place.glibc == "2.31"
    assert image.loaded is True, image.text
    assert matrix.failed(cells) == []
