"""Plugins that call their host: the audit lists the host's symbols, smoke provides them.

tests/crates/host_api is a cdylib like a Python or Lua module: it leaves ``host_add`` (a
function) and ``host_base`` (a static) undefined, for the program that loads it. Built by
the zig backend for centos7 (glibc 2.17) it fails a bare ``dlopen(RTLD_NOW)`` on bullseye's
glibc 2.31 (the ``bullseye`` sysroot of conftest.py) with ``undefined symbol``, and loads
with a generated stub preloaded, or with a real host library (a C .so built here that
defines both). Built by this machine's cargo (glibc 2.36) it still fails on bullseye in stub
mode: the stub provides the host's API, never glibc.
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
from elftools.elf.dynamic import DynamicSection
from elftools.elf.elffile import ELFFile
from elftools.elf.sections import SymbolTableSection

from tasks import pipeline
from tasks.builder.docker_client import Docker
from tasks.dlopen import matrix
from tasks.dlopen.harness import compile_stub
from tasks.dlopen.hostmode import STRICT, HostMode, HostPlan, stub_source
from tasks.dlopen.smoke import SmokeResult, smoke_in_image, smoke_native, smoke_sysroot
from tasks.elf.audit import audit_library, format_report, report_json
from tasks.elf.hostsyms import HostSymbol, TargetLibraries, host_symbols
from tasks.errors import ConfigError
from tasks.inputs import lockfile
from tasks.settings import PROJECT_ROOT, Settings
from tests.dlopen.conftest import quiet
from tests.dlopen.test_smoke_sysroot import c_library

LOCK = PROJECT_ROOT / "rsrc.lock.toml"
HOST_API = PROJECT_ROOT / "tests" / "crates" / "host_api"
HOST = ("host_add", "host_base")
LEFT = "2 symbols left to the host: host_add, host_base"
TOO_NEW = re.compile(r"version `GLIBC_2\.3[2-6]' not found")

HOST_LIB_C = """\
    int host_base = 40;
    int host_add(int a, int b) { return a + b; }
"""


@pytest.fixture(scope="session")
def native_host_api(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """host_api built by this machine's cargo, against this machine's glibc 2.36."""
    target = tmp_path_factory.mktemp("host-native-target")
    subprocess.run(["cargo", "build", "--release", "--quiet", "--manifest-path", str(HOST_API / "Cargo.toml")],
                   env={**os.environ, "CARGO_TARGET_DIR": str(target)}, check=True)
    return Path(shutil.copy(target / "release" / "libhost_api.so", target / "libhost_api_native.so"))


@pytest.fixture(scope="session")
def host_lib(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real host library: defines host_add and host_base (40)."""
    return c_library(tmp_path_factory.mktemp("hostlib"), "myhost", HOST_LIB_C)


# ----------------------------------------------------------------------------- audit


def test_audit_lists_exactly_the_host_symbols(zig_host_api: Path, native_host_api: Path, bullseye: Path) -> None:
    for lib in (zig_host_api, native_host_api):
        by_rule = audit_library(lib, target_glibc="2.31")
        on_target = audit_library(lib, target_glibc="2.31", libraries=TargetLibraries(bullseye))
        assert by_rule.host_symbols == on_target.host_symbols == HOST
        assert [s.name for s in host_symbols(lib, bullseye)] == list(HOST)
        assert f"  {LEFT}" in format_report([by_rule]).splitlines()
        [row] = json.loads(report_json([by_rule]))["libraries"]
        assert row["host_symbols"] == list(HOST)
    ok = audit_library(zig_host_api, target_glibc="2.17")
    assert ok.ok, format_report([ok])  # host symbols are information, not a violation


def test_a_symbol_the_targets_libraries_define_is_not_the_hosts(tmp_path: Path, bullseye: Path) -> None:
    """An unversioned reference that the target's libc.so.6 defines is libc's, not the host's.

    The library is linked against a version-less libc.so.6 made here, so its ``getpid`` carries
    no GLIBC_ version: the rule alone calls it the host's; bullseye's own libc says otherwise.
    """
    (tmp_path / "fakelibc.c").write_text("int getpid(void) { return 1; }\n")
    fake = tmp_path / "libc.so.6"
    subprocess.run(["gcc", "-shared", "-fPIC", "-nostdlib", "-Wl,-soname,libc.so.6", "-o", str(fake),
                    str(tmp_path / "fakelibc.c")], check=True)
    (tmp_path / "plugin.c").write_text("extern int host_add(int, int);\nint getpid(void);\n"
                                       "int test(void) { return host_add(1, getpid()); }\n")
    lib = tmp_path / "libplugin.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-nostdlib", "-o", str(lib), str(tmp_path / "plugin.c"), str(fake)],
                   check=True)
    assert [s.name for s in host_symbols(lib)] == ["getpid", "host_add"]  # by the rule: both unversioned
    assert [s.name for s in host_symbols(lib, bullseye)] == ["host_add"]  # bullseye's libc.so.6 defines getpid
    assert audit_library(lib, target_glibc="2.31", libraries=TargetLibraries(bullseye)).host_symbols == ("host_add",)


# ----------------------------------------------------------------------------- the stub


def test_the_stub_defines_functions_and_sized_zeroed_objects(tmp_path: Path, cache: Path) -> None:
    symbols = [HostSymbol("host_add", "FUNC"), HostSymbol("host_base", "OBJECT", 24),
               HostSymbol("untyped", "NOTYPE")]
    stub = compile_stub(cache, stub_source(symbols, "libx.so"))
    with stub.open("rb") as f:
        elf = ELFFile(f)
        dynsym = elf.get_section_by_name(".dynsym")
        dynamic = elf.get_section_by_name(".dynamic")
        assert isinstance(dynsym, SymbolTableSection) and isinstance(dynamic, DynamicSection)
        defined = {s.name: (s["st_info"]["type"], s["st_size"]) for s in dynsym.iter_symbols()
                   if s["st_shndx"] != "SHN_UNDEF" and s.name}
        needed = [t for t in dynamic.iter_tags() if t.entry.d_tag == "DT_NEEDED"]
    assert defined["host_add"][0] == "STT_FUNC" and defined["untyped"][0] == "STT_FUNC"
    assert defined["host_base"] == ("STT_OBJECT", 24)
    assert needed == []  # -nostdlib: the stub adds no glibc need of its own


# ----------------------------------------------------------------------------- sysroot and native


def test_strict_fails_with_undefined_symbol_on_bullseye(zig_host_api: Path, bullseye: Path, cache: Path) -> None:
    [r] = smoke_sysroot([zig_host_api], bullseye, cache=cache, strict=False, host=STRICT)
    assert not r.ok and "undefined symbol: host_" in (r.error or ""), r.output


def test_stub_mode_loads_it_on_bullseye_and_says_what_was_stubbed(
    zig_host_api: Path, bullseye: Path, cache: Path
) -> None:
    for mode in (HostMode(), HostMode("stub")):  # auto: stub, since it has host symbols
        [r] = smoke_sysroot([zig_host_api], bullseye, cache=cache, strict=False, host=mode)
        assert r.ok, r.output
        assert r.text == f"loaded ({LEFT})"
        assert "host_api: host_add(host_base, 2) = 0" in r.output  # test() ran, calling the stub


def test_stub_mode_loads_it_on_this_machine(zig_host_api: Path, native_host_api: Path, cache: Path) -> None:
    for lib in (zig_host_api, native_host_api):
        [bad] = smoke_native([lib], cache=cache, strict=False, host=STRICT)
        assert "undefined symbol" in (bad.error or "")
        [r] = smoke_native([lib], cache=cache, strict=False)
        assert r.ok and r.text == f"loaded ({LEFT})", r.output


def test_stub_mode_still_fails_a_too_new_glibc_need(native_host_api: Path, bullseye: Path, cache: Path) -> None:
    [r] = smoke_sysroot([native_host_api], bullseye, cache=cache, strict=False, host=HostMode("stub"))
    assert not r.ok and TOO_NEW.search(r.error or ""), r.output
    assert "smoke: preloaded " in r.output  # the stub loaded; the loader refused the library


def test_a_host_symbol_missing_from_the_exports_list_fails_naming_it(
    zig_host_api: Path, bullseye: Path, cache: Path, tmp_path: Path
) -> None:
    listed = tmp_path / "exports.txt"
    listed.write_text("# what the host exports\nhost_add\nsome_other_api\n")
    mode = HostMode.load("auto", host_symbols_file=str(listed))
    [r] = smoke_sysroot([zig_host_api], bullseye, cache=cache, strict=False, host=mode)
    assert not r.ok and r.error == f"host symbol host_base not in {listed} (what the host exports)"
    assert "smoke: loaded" not in r.output  # refused before loading
    listed.write_text("host_add\nhost_base\n")
    [r] = smoke_sysroot([zig_host_api], bullseye, cache=cache, strict=False,
                        host=HostMode.load("auto", host_symbols_file=str(listed)))
    assert r.ok and r.text == f"loaded ({LEFT})", r.output


def test_a_real_host_library_is_preloaded_and_its_symbols_used(
    zig_host_api: Path, bullseye: Path, cache: Path, host_lib: Path, tmp_path: Path
) -> None:
    mode = HostMode.load("auto", host_lib=str(host_lib))
    on_sysroot = smoke_sysroot([zig_host_api], bullseye, cache=cache, strict=False, host=mode)
    for r in [*on_sysroot, *smoke_native([zig_host_api], cache=cache, strict=False, host=mode)]:
        assert r.ok, r.output
        assert "host_api: host_add(host_base, 2) = 42" in r.output  # the real host's function and data
        assert r.text == f"loaded ({LEFT}; from {host_lib})"
    lacking = c_library(tmp_path, "halfhost", "int host_add(int a, int b) { return a + b; }\n")
    [r] = smoke_sysroot([zig_host_api], bullseye, cache=cache, strict=False,
                        host=HostMode.load("auto", host_lib=str(lacking)))
    assert not r.ok and (r.error or "").endswith("undefined symbol: host_base"), r.output


def test_host_mode_flags_and_config_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="host mode must be one of auto, stub, strict"):
        HostMode.load("lenient")
    with pytest.raises(ConfigError, match="--host-lib provides the host's symbols"):
        HostMode.load("strict", host_lib="/usr/lib/libpython3.9.so.1.0")
    with pytest.raises(ConfigError, match="--host-symbols .*nope.txt"):
        HostMode.load("stub", host_symbols_file=str(tmp_path / "nope.txt"))
    with pytest.raises(ConfigError, match="config compatbuild.host_mode must be one of"):
        Settings.from_mapping({"host_mode": "sometimes"})
    assert Settings.from_mapping({"host_mode": "strict"}).host_mode == "strict"


def test_the_plans_cache_material_changes_with_mode_stub_and_list() -> None:
    syms = (HostSymbol("host_add"), HostSymbol("host_base"))
    stub = HostPlan(HostMode("stub"), syms, stub=syms).material()
    assert stub != HostPlan(STRICT).material()
    assert stub != HostPlan(HostMode("stub"), syms, stub=syms[:1]).material()
    assert stub != HostPlan(HostMode("stub", exports=frozenset({"host_add", "host_base"})), syms, stub=syms).material()
    assert stub != HostPlan(HostMode("auto", host_lib="/l.so"), syms, host_lib="/l.so").material()


# ----------------------------------------------------------------------------- the task and the matrix


def test_smoke_task_host_modes_on_the_sysroot(zig_host_api: Path, bullseye: Path, shared: Settings,
                                              tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INVOKE_COMPATBUILD_")}
    env.update(DOCKER_HOST="unix:///nonexistent", INVOKE_COMPATBUILD_CACHE=str(shared.cache))
    run = [sys.executable, "-m", "invoke", "smoke", "--sysroot", str(bullseye), "--no-current",
           "--lib", str(zig_host_api)]
    ok = subprocess.run(run, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert ok.returncode == 0, ok.stderr
    assert f"libhost_api.so on the sysroot {bullseye}: loaded ({LEFT})" in ok.stdout.splitlines()
    bad = subprocess.run([*run, "--host-mode", "strict"], cwd=PROJECT_ROOT, env=env, capture_output=True,
                         text=True, timeout=300)
    assert bad.returncode == 11
    [line] = bad.stderr.strip().splitlines()
    assert "libhost_api.so failed on the sysroot" in line and "undefined symbol: host_" in line
    listed = tmp_path / "exports.txt"
    listed.write_text("host_add\n")
    bad = subprocess.run([*run, "--host-symbols", str(listed)], cwd=PROJECT_ROOT, env=env, capture_output=True,
                         text=True, timeout=300)
    assert bad.returncode == 11
    [line] = bad.stderr.strip().splitlines()
    assert line.endswith(f"host symbol host_base not in {listed} (what the host exports)")
    env["INVOKE_COMPATBUILD_HOST_MODE"] = "strict"  # the config key
    bad = subprocess.run(run, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert bad.returncode == 11 and "undefined symbol: host_" in bad.stderr


def test_matrix_honours_the_host_mode(shared: Settings, zig_host_api: Path) -> None:
    lock = lockfile.load(LOCK, "centos7")
    cells = pipeline.smoke_matrix(None, lock, shared, [zig_host_api], log=quiet)
    by = {c.place.name: c for c in cells}
    for place in ("bullseye", "bookworm", "this machine"):
        assert by[place].loaded is True and by[place].text == f"loaded ({LEFT})", by[place]
    assert f"| loaded ({LEFT}) |" in matrix.table(cells)
    strict = pipeline.smoke_matrix(None, lock, shared, [zig_host_api], log=quiet, host=STRICT)
    assert {c.place.name for c in matrix.failed(strict)} >= {"bullseye", "bookworm", "this machine"}
    assert all("undefined symbol: host_" in c.text for c in matrix.failed(strict))


# ----------------------------------------------------------------------------- the smoke image


@pytest.mark.docker
def test_host_modes_in_the_profiles_smoke_image(
    docker_client: Docker, profile_lock: Path, smoke_image: str, zig_host_api: Path, tmp_path: Path
) -> None:
    lock = lockfile.load(profile_lock)
    tag = smoke_image
    logs: list[str] = []

    def smoke(host: HostMode) -> SmokeResult:
        [r] = smoke_in_image(docker_client, lock, [zig_host_api], image=tag, cache=tmp_path, log=logs.append,
                             on_line=None, strict=False, host=host)
        return r

    bad = smoke(STRICT)
    assert not bad.ok and "undefined symbol: host_" in (bad.error or ""), bad.output
    r = smoke(HostMode("stub"))  # the stub compiled in the container by the image's own gcc
    assert r.ok and r.text == f"loaded ({LEFT})", r.output
    assert "host_api: host_add(host_base, 2) = 0" in r.output
    again = smoke(HostMode("stub"))
    assert again.ok and again.text == r.text and logs[-1].startswith("Using cached smoke result")
    assert not smoke(STRICT).ok  # a passing stub verdict is not a strict one
    listed = tmp_path / "exports.txt"
    listed.write_text("host_add\n")
    bad = smoke(HostMode.load("auto", host_symbols_file=str(listed)))
    assert bad.error == f"host symbol host_base not in {listed} (what the host exports)"
    # a real library inside the image as the host's: libc.so.6 defines neither, so the loader names one
    bad = smoke(HostMode.load("auto", host_lib="/lib/x86_64-linux-gnu/libc.so.6"))
    assert not bad.ok and "undefined symbol: host_" in (bad.error or ""), bad.output
