"""Real plugins in their real hosts: crates from the crate registry, the programs that load them.

A pyo3 ``abi3`` extension module leaves the Python C API to ``python3``, an mlua module the
Lua C API to ``lua5.1``; a rusqlite loadable extension reaches SQLite through the routines
``sqlite3`` hands it. Smoke proves each three ways: with a stub of exactly its host symbols,
with the host's real library preloaded (``--host-lib``), and by the real program itself
(``--host``), on the test profile's bullseye (glibc 2.31: python3.9, lua5.1, sqlite3) and
on this machine, and in ``smoke --matrix``. All three are built by the zig backend for
centos7's glibc 2.17 (tests/dlopen/conftest.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from tasks import pipeline
from tasks.builder.docker_client import Docker
from tasks.dlopen.hostmode import STRICT, HostMode
from tasks.dlopen.hostrun import HostCommand, Offer
from tasks.dlopen.smoke import SmokeResult, smoke_in_image, smoke_native, smoke_sysroot
from tasks.elf.audit import audit_library, format_report
from tasks.elf.hostsyms import TargetLibraries
from tasks.errors import ConfigError, SmokeError
from tasks.inputs import lockfile
from tasks.settings import PROJECT_ROOT, Settings

IMPORT = 'python3 -c "import {module}; assert {module}.add(2, 3) == 5"'
REQUIRE = """lua5.1 -e 'local m = require("{module}"); assert(m.add(2, 3) == 5); print("lua: " .. m.add(2, 3))'"""
LOAD = 'sqlite3 :memory: ".load {path}" "select \'sqlite: \' || half(8);"'
BULLSEYE = "/usr/lib/x86_64-linux-gnu"
BULLSEYE_LIBPYTHON = f"{BULLSEYE}/libpython3.9.so.1.0"


# ----------------------------------------------------------------------------- the host command


def test_a_host_command_names_the_library_and_starts_with_a_program() -> None:
    cmd = HostCommand.parse(IMPORT)
    assert cmd.program == "python3"
    offer = Offer.of(Path("/x/libmymod.so"))
    assert offer == Offer("mymod", "mymod.so")
    assert cmd.expand(offer, "/plugin") == 'python3 -c "import mymod; assert mymod.add(2, 3) == 5"'
    lua = HostCommand.parse("""lua5.1 -e 'local t = {} ; require("{module}")'""")  # other braces stay
    assert lua.expand(offer, "/p") == """lua5.1 -e 'local t = {} ; require("mymod")'"""
    sqlite = HostCommand.parse('sqlite3 :memory: ".load {path}"')
    assert sqlite.expand(offer, "/p") == 'sqlite3 :memory: ".load /p/mymod.so"'
    assert Offer.of(Path("mymod.abi3.so")).module == "mymod" and Offer.of(Path("libz.so.1")).module == "z"
    for bad, said in (("", "needs a command"), ("python3 -c 'import", "quote it"),
                      ("python3 -c pass", "never names the library"),
                      ("$(rm -rf /) {path}", "must start with a program")):
        with pytest.raises(ConfigError, match=said):
            HostCommand.parse(bad)
    with pytest.raises(SmokeError, match="no module name"):
        Offer.of(Path("/x/lib-my-mod.so"))


def test_the_host_command_is_part_of_the_cached_verdict() -> None:
    from tasks.dlopen.hostmode import HostPlan

    plain = HostPlan(HostMode()).material()
    with_host = HostPlan(HostMode.load(command=IMPORT)).material()
    assert plain != with_host
    assert with_host != HostPlan(HostMode.load(command="python3 -c 'import {module}'")).material()


# ----------------------------------------------------------------------------- pyo3


def test_a_pyo3_module_leaves_the_python_api_to_its_host_and_loads_with_a_stub(
    zig_pyo3: Path, bullseye: Path, cache: Path
) -> None:
    audit = audit_library(zig_pyo3, target_glibc="2.17", libraries=TargetLibraries(bullseye))
    assert audit.ok, format_report([audit])
    assert {"PyBytes_AsString", "PyDict_Next", "PyErr_Fetch"} <= set(audit.host_symbols)
    assert all(name.startswith(("Py", "_Py")) for name in audit.host_symbols), audit.host_symbols
    [bad] = smoke_sysroot([zig_pyo3], bullseye, cache=cache, strict=False, host=STRICT)
    assert not bad.ok and "undefined symbol: Py" in (bad.error or ""), bad.output
    [r] = smoke_sysroot([zig_pyo3], bullseye, cache=cache, strict=False)
    assert r.ok, r.output
    assert r.text.startswith(f"loaded ({len(audit.host_symbols)} symbols left to the host: PyBytes_AsString, ")


def test_a_pyo3_module_loads_with_this_machines_libpython_as_the_host_library(zig_pyo3: Path, cache: Path) -> None:
    libpython = Path(str(sysconfig.get_config_var("LIBDIR"))) / str(sysconfig.get_config_var("INSTSONAME"))
    assert libpython.is_file(), f"this machine's python has no shared libpython ({libpython})"
    [r] = smoke_native([zig_pyo3], cache=cache, strict=False, host=HostMode.load("auto", host_lib=str(libpython)))
    assert r.ok and r.text.endswith(f"; from {libpython})"), r.output


def test_this_machines_python3_imports_the_pyo3_module(zig_pyo3: Path, cache: Path) -> None:
    [r] = smoke_native([zig_pyo3], cache=cache, strict=False, host=HostMode.load(command=IMPORT))
    assert r.ok, r.output
    assert r.text.startswith("loaded (") and r.text.endswith("; python3 ran it)"), r.text
    [bad] = smoke_native([zig_pyo3], cache=cache, strict=False,
                         host=HostMode.load(command='python3 -c "import {module}; raise SystemExit(\'no add\')"'))
    assert not bad.ok and bad.error == "host python3 exited 1: no add", bad.output
    [absent] = smoke_native([zig_pyo3], cache=cache, strict=False,
                            host=HostMode.load(command="no-such-host-program {path}"))
    assert absent.ok and absent.text.endswith("; no-such-host-program not in this machine)"), absent.text


@pytest.mark.docker
def test_bullseyes_python3_imports_the_pyo3_module_in_the_smoke_image(
    docker_client: Docker, profile_lock: Path, smoke_image: str, zig_pyo3: Path, tmp_path: Path
) -> None:
    lock = lockfile.load(profile_lock)
    logs: list[str] = []

    def smoke(host: HostMode) -> SmokeResult:
        [r] = smoke_in_image(docker_client, lock, [zig_pyo3], image=smoke_image, cache=tmp_path, log=logs.append,
                             on_line=None, strict=False, host=host)
        return r

    r = smoke(HostMode.load(command=IMPORT))
    assert r.ok and r.text.endswith("; python3 ran it)"), r.output
    again = smoke(HostMode.load(command=IMPORT))
    assert again.ok and again.text == r.text and logs[-1].startswith("Using cached smoke result")
    real = smoke(HostMode.load(host_lib=BULLSEYE_LIBPYTHON))  # bullseye's own libpython3.9
    assert real.ok and real.text.endswith(f"; from {BULLSEYE_LIBPYTHON})"), real.output
    bad = smoke(HostMode.load(command='python3 -c "import {module}; {module}.nope()"'))
    assert not bad.ok and bad.error == "host python3 exited 1: AttributeError: module 'mymod' has no attribute 'nope'"
    absent = smoke(HostMode.load(command="no-such-host-program {path}"))
    assert not absent.ok and absent.error == (
        f"host program no-such-host-program is not in the image {smoke_image}; the host run needs it there")


@pytest.mark.docker
def test_the_smoke_task_runs_the_host_program(
    profile_lock: Path, profile_settings: Settings, smoke_image: str, zig_pyo3: Path, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INVOKE_COMPATBUILD_")}
    env.update(INVOKE_COMPATBUILD_CACHE=str(profile_settings.cache), INVOKE_COMPATBUILD_LOCK=str(profile_lock))
    run = [sys.executable, "-m", "invoke", "smoke", "--lib", str(zig_pyo3), "--json"]
    ok = subprocess.run([*run, "--host", IMPORT], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True,
                        timeout=600)
    assert ok.returncode == 0, ok.stderr
    doc = json.loads(ok.stdout)
    assert doc["ok"] and all(r["host"].endswith("python3 ran it") for r in doc["results"]), doc
    bad = subprocess.run([*run, "--host", 'python3 -c "import {module}_typo"'], cwd=PROJECT_ROOT, env=env,
                         capture_output=True, text=True, timeout=600)
    assert bad.returncode == 11, bad.stderr
    [line] = bad.stderr.strip().splitlines()[-1:]
    assert "host python3 exited 1: ModuleNotFoundError: No module named 'mymod_typo'" in line, bad.stderr


def test_the_matrix_runs_the_host_program_where_it_exists(shared: Settings, zig_pyo3: Path) -> None:
    lock = lockfile.load(PROJECT_ROOT / "rsrc.lock.toml", "centos7")
    cells = pipeline.smoke_matrix(None, lock, shared, [zig_pyo3], log=lambda _: None,
                                  host=HostMode.load(command=IMPORT))
    by = {c.place.name: c for c in cells}
    assert by["this machine"].loaded is True and by["this machine"].text.endswith("; python3 ran it)")
    for place in ("bullseye", "bookworm"):  # sysroots: no programs; the stub proof stands
        assert by[place].loaded is True, by[place]
        assert by[place].text.endswith("; python3 not in a sysroot (it has no programs to run))"), by[place]


# ----------------------------------------------------------------------------- mlua and rusqlite


def test_an_mlua_module_leaves_the_lua_api_to_its_host_and_loads_with_a_stub(
    zig_luamod: Path, bullseye: Path, cache: Path
) -> None:
    audit = audit_library(zig_luamod, target_glibc="2.17", libraries=TargetLibraries(bullseye))
    assert audit.ok, format_report([audit])
    assert {"lua_pushinteger", "lua_settable", "luaL_callmeta"} <= set(audit.host_symbols)
    assert all(name.startswith(("lua_", "luaL_")) for name in audit.host_symbols), audit.host_symbols
    [bad] = smoke_sysroot([zig_luamod], bullseye, cache=cache, strict=False, host=STRICT)
    assert not bad.ok and "undefined symbol: lua" in (bad.error or ""), bad.output
    [r] = smoke_sysroot([zig_luamod], bullseye, cache=cache, strict=False)
    assert r.ok and r.text.startswith(f"loaded ({len(audit.host_symbols)} symbols left to the host: "), r.output


def test_a_rusqlite_extension_needs_nothing_of_its_host_but_the_routines_it_is_handed(
    zig_sqlext: Path, bullseye: Path, cache: Path
) -> None:
    audit = audit_library(zig_sqlext, target_glibc="2.17", libraries=TargetLibraries(bullseye))
    assert audit.ok and audit.host_symbols == (), format_report([audit])
    [r] = smoke_sysroot([zig_sqlext], bullseye, cache=cache, strict=False)
    assert r.ok and r.text == "loaded", r.output  # loading alone: what only sqlite3 calls did not run


@pytest.mark.docker
@pytest.mark.parametrize(("crate", "host_lib", "command", "said"), [
    ("pyo3", BULLSEYE_LIBPYTHON, IMPORT, ""),
    ("lua", f"{BULLSEYE}/liblua5.1.so.0", REQUIRE, "lua: 5"),
    ("sqlite", f"{BULLSEYE}/libsqlite3.so.0", LOAD, "sqlite: 4.0"),
])
def test_each_real_plugin_passes_stub_host_library_and_real_host_on_the_profiles_glibc(
    request: pytest.FixtureRequest, docker_client: Docker, profile_lock: Path, smoke_image: str, tmp_path: Path,
    crate: str, host_lib: str, command: str, said: str,
) -> None:
    lib = request.getfixturevalue({"pyo3": "zig_pyo3", "lua": "zig_luamod", "sqlite": "zig_sqlext"}[crate])
    lock = lockfile.load(profile_lock)

    def smoke(host: HostMode) -> SmokeResult:
        [r] = smoke_in_image(docker_client, lock, [lib], image=smoke_image, cache=tmp_path, log=lambda _: None,
                             on_line=None, strict=False, host=host)
        return r

    stub = smoke(HostMode())
    assert stub.ok, stub.output
    real_lib = smoke(HostMode.load(host_lib=host_lib))  # bullseye's own library of the host
    assert real_lib.ok and real_lib.text.endswith((f"preloaded {host_lib})", f"; from {host_lib})")), real_lib.output
    program = smoke(HostMode.load(command=command))
    assert program.ok and program.host.endswith(f"{command.split()[0]} ran it"), program.output
    assert said in program.output


@pytest.mark.docker
def test_the_real_hosts_refuse_what_is_broken_with_their_own_last_line(
    docker_client: Docker, profile_lock: Path, smoke_image: str, zig_luamod: Path, zig_sqlext: Path, tmp_path: Path,
) -> None:
    lock = lockfile.load(profile_lock)

    def smoke(lib: Path, command: str) -> SmokeResult:
        [r] = smoke_in_image(docker_client, lock, [lib], image=smoke_image, cache=tmp_path, log=lambda _: None,
                             on_line=None, strict=False, host=HostMode.load(command=command))
        return r

    lua = smoke(zig_luamod, """lua5.1 -e 'assert(require("{module}").sub, "luamod has no sub")'""")
    assert not lua.ok and (lua.error or "").startswith("host lua5.1 exited 1: ") and "luamod has no sub" in (
        lua.error or ""), lua.output
    sql = smoke(zig_sqlext, 'sqlite3 :memory: ".load {path}" "select double(8);"')
    assert not sql.ok and "no such function: double" in (sql.error or ""), sql.output


@pytest.mark.docker
@pytest.mark.parametrize(("crate", "command"), [("zig_pyo3", IMPORT), ("zig_luamod", REQUIRE), ("zig_sqlext", LOAD)])
def test_the_matrix_runs_each_real_host_in_the_image_and_where_else_it_exists(
    request: pytest.FixtureRequest, docker_client: Docker, profile_settings: Settings, smoke_image: str,
    crate: str, command: str,
) -> None:
    lib = request.getfixturevalue(crate)
    cells = pipeline.smoke_matrix(docker_client, lockfile.load(profile_settings.lock), profile_settings, [lib],
                                  log=lambda _: None, host=HostMode.load(command=command))
    program = command.split()[0]
    [image] = [c for c in cells if c.place.how == "container"]
    assert image.loaded is True and image.text.endswith(f"{program} ran it)"), image
    [here] = [c for c in cells if c.place.name == "this machine"]
    assert here.loaded is True and here.text.endswith((f"{program} ran it)", f"{program} not in this machine)")), here
