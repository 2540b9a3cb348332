"""aarch64 without an aarch64 machine: zig builds, the audit at 2.17, and loads under qemu.

The zig backend builds examples/hello and tests/crates/with_cc (C code, compiled by zig cc)
for the centos7-aarch64 target (``aarch64-unknown-linux-gnu.2.17``); the audit reads them as
EM_AARCH64 against glibc 2.17. `smoke --matrix` then loads them on Debian's arm64 glibcs
(bullseye 2.31, bookworm 2.36, trixie 2.41, from the pinned .debs) under
``qemu-aarch64-static``, with each sysroot's own loader and a harness that the pinned zig
cross-linked against that sysroot's own crt files and libc. A C library that asks for glibc
2.38 (``strlcpy``) fails on bullseye-arm64 and bookworm-arm64 with the loader's own words and
loads on trixie-arm64; an x86_64 library offered to an aarch64 place is refused in one line,
before anything runs. Needs ``rustup target add aarch64-unknown-linux-gnu`` and Debian's
qemu-user-static (.ci/run installs both).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tasks import arches, pipeline
from tasks.backends import zigtools
from tasks.dlopen import matrix
from tasks.dlopen.harness import CrossCC, compile_harness
from tasks.dlopen.smoke import smoke_sysroot, sysroot_loader
from tasks.dlopen.sysroot import make_sysroot_from_debs
from tasks.errors import RustStdError, SmokeError
from tasks.inputs import lockfile
from tasks.settings import PROJECT_ROOT, Settings
from tasks.store import Store

LOCK = PROJECT_ROOT / "rsrc.lock.toml"
TARGET = "centos7-aarch64"
ARM64 = ("bullseye-arm64", "bookworm-arm64", "trixie-arm64")
STRLCPY_C = """
#include <string.h>
unsigned long copy(char *out, const char *in, unsigned long n) { return strlcpy(out, in, n); }
int test(void) { char out[8]; return copy(out, "glibc 2.38", sizeof out) == 10 ? 0 : 1; }
"""


def quiet(_line: str) -> None:
    pass


@pytest.fixture(scope="module")
def shared(profile_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(lock=LOCK, cache=profile_cache / "store", out=tmp_path_factory.mktemp("a64-out"),
                    progress="never", backend="zig")


@pytest.fixture(scope="module")
def aarch64() -> lockfile.Lockfile:
    return lockfile.load(LOCK, TARGET)


@pytest.fixture(scope="module")
def built(shared: Settings, aarch64: lockfile.Lockfile,
          tmp_path_factory: pytest.TempPathFactory) -> dict[str, pipeline.BuildResult]:
    """examples/hello and tests/crates/with_cc, built by the zig backend for aarch64 glibc 2.17."""
    out = {}
    for name, src in (("hello", PROJECT_ROOT / "examples" / "hello"),
                      ("with_cc", PROJECT_ROOT / "tests" / "crates" / "with_cc")):
        crate = tmp_path_factory.mktemp("a64-crates") / name
        shutil.copytree(src, crate, ignore=shutil.ignore_patterns("target"))
        out[name] = pipeline.build(None, aarch64, shared, crate, log=quiet, on_line=quiet)
    return out


@pytest.fixture(scope="module")
def zig(shared: Settings, aarch64: lockfile.Lockfile) -> CrossCC:
    pipeline.inputs_ready(aarch64, shared, zigtools.ARTIFACTS, quiet)
    tools = zigtools.install(aarch64, Store(shared.cache), shared.cache, log=quiet)
    return CrossCC(tools.zig, shared.cache / "zig" / "cache")


@pytest.fixture(scope="module")
def bullseye_arm64(shared: Settings, aarch64: lockfile.Lockfile, tmp_path_factory: pytest.TempPathFactory) -> Path:
    _glibc, debs = matrix.deb_suites(aarch64)["bullseye-arm64"]
    pipeline.inputs_ready(aarch64, shared, [a.name for a in debs], quiet)
    store = Store(shared.cache)
    return make_sysroot_from_debs([store.path(a.sha256) for a in debs],
                                  tmp_path_factory.mktemp("a64-sysroots") / "bullseye-arm64", log=quiet)


def _machine(path: Path) -> str:
    return subprocess.run(["readelf", "-h", str(path)], capture_output=True, text=True, check=True).stdout


# ----------------------------------------------------------------------------- build and audit


def test_zig_builds_aarch64_with_c_code_audited_at_2_17(built: dict[str, pipeline.BuildResult]) -> None:
    for name, result in built.items():
        [lib] = result.libraries
        assert arches.of_file(lib) == arches.AARCH64, name
        assert "AArch64" in _machine(lib), name
        [audit] = result.audits
        assert audit.ok, (name, audit)
        assert audit.arch == "aarch64" and audit.target_glibc == "2.17", name
        assert audit.max_glibc == "2.17", (name, audit.max_glibc)
    greet = subprocess.run(["readelf", "-Ws", "--dyn-syms", str(built["with_cc"].libraries[0])],
                           capture_output=True, text=True, check=True).stdout
    assert "snprintf" in greet  # the C code's own libc call, linked by zig for 2.17


def test_no_aarch64_std_is_the_one_line_naming_rustup(aarch64: lockfile.Lockfile, shared: Settings,
                                                      tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A toolchain that has x86_64's std but not aarch64's (before `rustup target add`)."""
    sysroot = tmp_path / "sysroot"
    lib = sysroot / "lib" / "rustlib" / "x86_64-unknown-linux-gnu" / "lib"
    lib.mkdir(parents=True)
    (lib / "libstd-0000.rlib").write_bytes(b"")
    rustc = tmp_path / "rustc"
    real = shutil.which("rustc")
    rustc.write_text(f'#!/bin/sh\n[ "$1" = --print ] && {{ echo {sysroot}; exit 0; }}\nexec {real} "$@"\n')
    rustc.chmod(0o755)
    monkeypatch.setenv("RUSTC", str(rustc))
    with pytest.raises(RustStdError) as err:
        pipeline.build(None, aarch64, shared, PROJECT_ROOT / "examples" / "hello", out=tmp_path / "out",
                       log=quiet, on_line=quiet)
    assert str(err.value) == (f"no Rust std for aarch64-unknown-linux-gnu in the toolchain at {sysroot}; "
                              "run `rustup target add aarch64-unknown-linux-gnu`")


# ----------------------------------------------------------------------------- the matrix under qemu


def test_they_load_under_qemu_on_three_arm64_glibcs(shared: Settings, aarch64: lockfile.Lockfile,
                                                     built: dict[str, pipeline.BuildResult]) -> None:
    libs = [r.libraries[0] for r in built.values()]
    cells = pipeline.smoke_matrix(None, aarch64, shared, libs, log=quiet)
    by = {(c.place.name, c.library.name): c for c in cells}
    for place, glibc in zip(ARM64, ("2.31", "2.36", "2.41"), strict=True):
        for lib in libs:
            cell = by[(place, lib.name)]
            assert cell.loaded is True, cell
            assert (cell.place.glibc, cell.place.how, cell.place.arch) == (glibc, "qemu", "aarch64")
    assert {c.place.name for c in cells} == {*ARM64, TARGET, f"{TARGET} image", "this machine"}  # no x86_64 row
    assert by[(TARGET, "libhello.so")].text == "not pinned"  # its AltArch RPMs are not pinned here
    assert by[("this machine", "libhello.so")].loaded is None
    assert matrix.failed(cells) == []
    text = matrix.table(cells)
    assert "| 2.31 | bullseye-arm64 (qemu) | loaded | loaded |" in text, text
    assert {"arch": "aarch64", "how": "qemu"}.items() <= by[("trixie-arm64", "libhello.so")].to_dict().items()


def test_a_library_needing_glibc_2_38_fails_on_bullseye_arm64_in_the_loaders_words(
        shared: Settings, aarch64: lockfile.Lockfile, zig: CrossCC, tmp_path: Path) -> None:
    source = tmp_path / "new.c"
    source.write_text(STRLCPY_C)
    lib = tmp_path / "libnew238.so"
    subprocess.run([*zig.argv(arches.AARCH64)[:-1], "aarch64-linux-gnu.2.38", "-shared", "-fPIC", "-O0",
                    "-o", str(lib), str(source)], check=True, env=zig.env())
    assert "GLIBC_2.38" in subprocess.run(["readelf", "-V", str(lib)], capture_output=True, text=True).stdout
    cells = pipeline.smoke_matrix(None, aarch64, shared, [lib], log=quiet)
    by = {c.place.name: c for c in cells}
    # the loader names the first missing version it meets: on 2.31 one of 2.34 to 2.38, on 2.36 2.38 itself
    for old, missing in (("bullseye-arm64", r"2\.3[4-8]"), ("bookworm-arm64", r"2\.38")):
        assert by[old].loaded is False, by[old]
        assert re.search(rf"version `GLIBC_{missing}' not found \(required by .*libnew238\.so\)", by[old].text), by[old]
    assert by["trixie-arm64"].loaded is True, by["trixie-arm64"]
    assert [c.place.name for c in matrix.failed(cells)] == ["bullseye-arm64", "bookworm-arm64"]


def test_an_x86_64_library_offered_to_an_aarch64_place_is_refused_in_one_line(
        bullseye_arm64: Path, tmp_path: Path) -> None:
    x86 = tmp_path / "libx86.so"
    (tmp_path / "x.c").write_text("int test(void) { return 0; }\n")
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(x86), str(tmp_path / "x.c")], check=True)
    cache = tmp_path / "cache"
    with pytest.raises(SmokeError) as err:
        smoke_sysroot([x86], bullseye_arm64, cache=cache)  # no cross compiler given: nothing may be built
    text = str(err.value)
    assert "\n" not in text
    assert text.endswith("libx86.so is an x86_64 (EM_X86_64) library; this place is aarch64 (EM_AARCH64)")
    assert not (cache / "smoke").exists()  # refused before any harness was built or run


def test_the_arm64_harness_is_cross_linked_against_the_sysroot_alone(bullseye_arm64: Path, zig: CrossCC,
                                                                     tmp_path: Path) -> None:
    with pytest.raises(SmokeError, match="cross-compiled for it by the pinned zig") as err:
        compile_harness(tmp_path, sysroot=bullseye_arm64)
    assert "\n" not in str(err.value)
    harness = compile_harness(tmp_path, sysroot=bullseye_arm64, cross=zig)
    head = _machine(harness)
    assert "AArch64" in head and "EXEC" in head
    dyn = subprocess.run(["readelf", "-dlW", str(harness)], capture_output=True, text=True, check=True).stdout
    assert "[Requesting program interpreter: /lib/ld-linux-aarch64.so.1]" in dyn
    assert re.findall(r"\(NEEDED\).*\[(.*)\]", dyn) == ["libdl.so.2", "libc.so.6"]
    loader, dirs = sysroot_loader(bullseye_arm64)
    assert loader.name == "ld-linux-aarch64.so.1" and loader.is_relative_to(bullseye_arm64)
    run = subprocess.run(["qemu-aarch64-static", "-L", str(bullseye_arm64), str(loader), "--inhibit-cache",
                          "--library-path", ":".join(map(str, dirs)), str(harness), "/nonexistent.so"],
                         capture_output=True, text=True, check=False)
    assert run.returncode == 3 and "cannot open shared object file" in run.stdout + run.stderr


def test_a_plugin_with_host_symbols_loads_with_an_aarch64_stub_under_qemu(
        shared: Settings, aarch64: lockfile.Lockfile, tmp_path: Path) -> None:
    """host_api leaves host_add and host_base to its host: the stub is built by zig for aarch64."""
    crate = tmp_path / "host_api"
    shutil.copytree(PROJECT_ROOT / "tests" / "crates" / "host_api", crate, ignore=shutil.ignore_patterns("target"))
    [lib] = pipeline.build(None, aarch64, shared, crate, out=tmp_path / "out", log=quiet, on_line=quiet).libraries
    cells = pipeline.smoke_matrix(None, aarch64, shared, [lib], log=quiet)
    for cell in (c for c in cells if c.place.name in ARM64):
        assert cell.loaded is True and cell.text == "loaded (2 symbols left to the host: host_add, host_base)", cell
    stubs = list((shared.cache / "smoke" / "stubs").glob("host-stub-*.so"))
    assert any(arches.of_file(s) == arches.AARCH64 for s in stubs)
