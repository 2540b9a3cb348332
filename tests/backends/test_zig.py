"""The zig backend: cargo-zigbuild + zig from pinned wheels, the host's Rust, no Docker.

Real builds (PyPI and the crate registry are reachable here): the example, a crate with
registry dependencies and a crate with C code (the ``cc`` crate, compiled by ``zig cc``)
built for centos7's glibc 2.17 pass the audit at 2.17 and load under bullseye's glibc 2.31
in a sysroot, and (marked docker) in the test profile's bullseye smoke image. The wheels
and their unpacked install live in the test profile's shared store, so the ~9 s first use
is paid once per machine; every error case has its own exit code.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tasks import memo, pipeline, proc
from tasks.backends import headstart, zigtools
from tasks.backends import zig as zig_backend
from tasks.backends.outputs import RECORD, last_build
from tasks.builder.docker_client import Docker, connect
from tasks.dlopen.smoke import smoke_sysroot
from tasks.errors import CargoError, ConfigError, DockerError, RustStdError, ZigError, ZigTargetError
from tasks.inputs import lockfile
from tasks.settings import PROJECT_ROOT, Settings
from tasks.store import Store

LOCK = PROJECT_ROOT / "rsrc.lock.toml"
CRATES = {"hello": PROJECT_ROOT / "examples" / "hello",
          "with_dep": PROJECT_ROOT / "tests" / "crates" / "with_dep",
          "with_cc": PROJECT_ROOT / "tests" / "crates" / "with_cc"}


def quiet(_line: str) -> None:
    pass


@pytest.fixture(scope="session")
def centos7() -> lockfile.Lockfile:
    return lockfile.load(LOCK, "centos7")


@pytest.fixture(scope="session")
def zig_settings(profile_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """The zig backend with the test profile's shared store: wheels and install paid once."""
    return Settings(lock=LOCK, cache=profile_cache / "store", out=tmp_path_factory.mktemp("zig-out"),
                    progress="never", backend="zig")


@pytest.fixture(scope="session")
def zig_built(centos7: lockfile.Lockfile, zig_settings: Settings) -> dict[str, pipeline.BuildResult]:
    """Each crate built once by the zig backend for centos7 (glibc 2.17)."""
    return {name: pipeline.build(None, centos7, zig_settings, path, log=quiet, on_line=quiet)
            for name, path in CRATES.items()}


@pytest.mark.parametrize("name", list(CRATES))
def test_zig_builds_pass_the_2_17_audit_and_load_on_bullseye(
    name: str, zig_built: dict[str, pipeline.BuildResult], centos7: lockfile.Lockfile, bullseye: Path,
    zig_settings: Settings,
) -> None:
    result = zig_built[name]
    [lib] = result.libraries
    assert lib.parent == zig_settings.out / "centos7"  # the same outputs folder as the image builds
    [audit] = pipeline.audit(result.libraries, centos7, fixups=result.fixups)
    assert audit.ok, audit
    assert audit.max_glibc is not None and tuple(map(int, audit.max_glibc.split("."))) <= (2, 17)
    [loaded] = smoke_sysroot([lib], bullseye, cache=zig_settings.cache)
    assert loaded.ok and "2.31" not in str(lib)


def test_zig_build_is_recorded_like_an_image_build(zig_built: dict[str, pipeline.BuildResult],
                                                   zig_settings: Settings) -> None:
    record = json.loads((zig_settings.out / "centos7" / RECORD).read_text())
    assert record["backend"] == "zig"
    assert record["target"] == {"name": "centos7", "glibc": "2.17"}
    assert "cargo-zigbuild 0.24.1" in record["image"] and "ziglang 0.17.1" in record["image"]
    assert last_build(zig_settings.out, "centos7").libraries == (Path(record["libraries"][0]),)


def test_c_code_is_compiled_for_the_target_glibc(zig_built: dict[str, pipeline.BuildResult]) -> None:
    """No fcntl64/stat64-style leak from the cc crate's C code: zig cc uses the 2.17 headers."""
    [lib] = zig_built["with_cc"].libraries
    syms = subprocess.run(["readelf", "--dyn-syms", "-W", str(lib)], capture_output=True, text=True,
                          check=True).stdout
    assert "snprintf@GLIBC_" in syms  # the C code's own import
    assert "fcntl64" not in syms and "@GLIBC_2.33" not in syms
    versions = {w.split("@")[-1].split()[0] for w in syms.split() if "@GLIBC_" in w}
    assert versions and all(tuple(map(int, v.removeprefix("GLIBC_").split("."))) <= (2, 17) for v in versions)


@pytest.mark.docker
def test_zig_build_loads_in_the_bullseye_smoke_image(
    zig_built: dict[str, pipeline.BuildResult], docker_client: Docker, profile_settings: Settings,
    profile_lock: Path,
) -> None:
    lock = lockfile.load(profile_lock)
    libs = [r.libraries[0] for r in zig_built.values()]
    results = pipeline.smoke(docker_client, lock, profile_settings, libs, log=quiet, on_line=None)
    assert [r.ok for r in results] == [True] * len(libs)
    assert all("glibc 2.31" in r.where for r in results)


# ----------------------------------------------------------------------------- errors


def test_a_glibc_the_pinned_zig_cannot_target_is_refused(centos7: lockfile.Lockfile, zig_settings: Settings,
                                                         tmp_path: Path) -> None:
    for glibc, words in (("2.99", "cannot target glibc 2.99"), ("2.16", "below Rust std's floor")):
        lock = dataclasses.replace(centos7, target=dataclasses.replace(centos7.target, glibc=glibc))
        with pytest.raises(ZigTargetError, match=words) as err:
            pipeline.build(None, lock, zig_settings, CRATES["hello"], out=tmp_path, log=quiet, on_line=quiet)
        assert err.value.exit_code == 36 and "\n" not in str(err.value)
    assert not (tmp_path / "centos7").exists()


def test_no_rust_std_for_the_triple_is_one_line(centos7: lockfile.Lockfile, zig_settings: Settings,
                                                 tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A real rustc whose sysroot has no x86_64-unknown-linux-gnu std (as `rustup target remove`)."""
    empty = tmp_path / "empty-sysroot"
    empty.mkdir()
    rustc = tmp_path / "rustc"
    rustc.write_text(f'#!/bin/sh\nexec {shutil.which("rustc")} --sysroot {empty} "$@"\n')
    rustc.chmod(0o755)
    monkeypatch.setenv("RUSTC", str(rustc))
    with pytest.raises(RustStdError, match="no Rust std for x86_64-unknown-linux-gnu.*rustup target add") as err:
        pipeline.build(None, centos7, zig_settings, CRATES["hello"], out=tmp_path, log=quiet, on_line=quiet)
    assert err.value.exit_code == 37


def test_cargo_failing_is_a_cargo_error(centos7: lockfile.Lockfile, zig_settings: Settings,
                                        tmp_path: Path) -> None:
    with pytest.raises(CargoError, match="cargo-zigbuild build of broken failed: error") as err:
        pipeline.build(None, centos7, zig_settings, PROJECT_ROOT / "tests" / "crates" / "broken",
                       out=tmp_path, log=quiet, on_line=quiet)
    assert err.value.exit_code == 9 and "\n" not in str(err.value)


def _link_lib_crate(root: Path, name: str, build_rs: str) -> Path:
    """A cdylib crate whose build script prints ``build_rs``'s link requests."""
    crate = root / name
    (crate / "src").mkdir(parents=True)
    (crate / "Cargo.toml").write_text(f'[package]\nname = "{name}"\nversion = "0.1.0"\nedition = "2021"\n'
                                      '[lib]\ncrate-type = ["cdylib"]\n')
    (crate / "src" / "lib.rs").write_text("#[no_mangle]\npub extern \"C\" fn test() {}\n")
    (crate / "build.rs").write_text(build_rs)
    return crate


def test_a_failed_link_names_its_cause(centos7: lockfile.Lockfile, zig_settings: Settings, tmp_path: Path) -> None:
    crate = _link_lib_crate(tmp_path, "needs_missing",
                            'fn main() { println!("cargo:rustc-link-lib=dylib=compatbuild_no_such_lib"); }\n')
    with pytest.raises(CargoError) as err:
        pipeline.build(None, centos7, zig_settings, crate, out=tmp_path / "out", log=quiet, on_line=quiet)
    said = str(err.value)
    assert "linking with" in said and "cause: " in said and "compatbuild_no_such_lib" in said, said
    assert "\n" not in said


@pytest.mark.skipif(shutil.which("pkg-config") is None, reason="needs pkg-config (pkgconf) on this machine")
def test_build_scripts_do_not_see_this_machines_pkg_config(
    centos7: lockfile.Lockfile, zig_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A .pc file this machine's pkg-config finds is not handed to a zig build's build script."""
    pc = tmp_path / "pc"
    pc.mkdir()
    (pc / "compatbuildhostlib.pc").write_text("Name: compatbuildhostlib\nDescription: x\nVersion: 1\n"
                                               "Libs: -L/nonexistent -lcompatbuildhostlib\n")
    monkeypatch.setenv("PKG_CONFIG_LIBDIR", str(pc))  # the host's database, as a build script would see it
    monkeypatch.setenv("PKG_CONFIG_PATH", str(pc))
    seen = subprocess.run(["pkg-config", "--libs", "compatbuildhostlib"], capture_output=True, text=True)
    assert seen.returncode == 0, seen.stderr  # this machine's pkg-config finds it
    crate = _link_lib_crate(tmp_path, "asks_pkg_config", """\
use std::process::Command;
fn main() {
    let found = Command::new("pkg-config").args(["--libs", "compatbuildhostlib"]).output();
    if let Ok(out) = found {
        if out.status.success() {
            println!("cargo:rustc-link-lib=dylib=compatbuildhostlib"); // as the pkg-config crate would
        }
    }
}
""")
    [lib] = pipeline.build(None, centos7, zig_settings, crate, out=tmp_path / "out", log=quiet,
                           on_line=quiet).libraries
    assert lib.is_file()


def test_a_corrupt_or_missing_file_in_the_zig_install_is_found(centos7: lockfile.Lockfile,
                                                               zig_settings: Settings, tmp_path: Path) -> None:
    """The install is checked against the wheel's RECORD on every use (stat, then hash if changed)."""
    artifact = centos7.artifact("cargo-zigbuild")
    said: list[str] = []
    root = zigtools.install_wheel(artifact, Store(zig_settings.cache), tmp_path, log=said.append)
    assert said == [f"Installing {artifact.filename} into {root}"]
    assert zigtools.install_wheel(artifact, Store(zig_settings.cache), tmp_path, log=said.append) == root
    assert len(said) == 1  # installed once; the second call only checks
    [exe] = root.glob("*.data/scripts/cargo-zigbuild")
    os.utime(exe, ns=(1, 1))  # touched, same bytes: still good
    zigtools.check_install(root)
    data = bytearray(exe.read_bytes())
    data[4096] ^= 0xFF  # same size, other bytes
    exe.write_bytes(bytes(data))
    with pytest.raises(ZigError, match="corrupt: .*cargo-zigbuild has sha256") as err:
        zigtools.install_wheel(artifact, Store(zig_settings.cache), tmp_path, log=said.append)
    assert err.value.exit_code == 35
    exe.unlink()
    with pytest.raises(ZigError, match="missing .*cargo-zigbuild; remove"):
        zigtools.check_install(root)


def test_the_pinned_zig_is_used_not_a_python_ziglang(centos7: lockfile.Lockfile, zig_settings: Settings,
                                                     tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """cargo-zigbuild asks `python3 -m ziglang` first; a user's own ziglang must never be taken."""
    fake = tmp_path / "bin"
    fake.mkdir()
    marker = tmp_path / "python-was-asked"
    (fake / "python3").write_text(f"#!/bin/sh\ntouch {marker}\nexit 1\n")
    (fake / "python3").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}{os.pathsep}{os.environ['PATH']}")
    pipeline.build(None, centos7, zig_settings, CRATES["hello"], out=tmp_path / "out", log=quiet, on_line=quiet)
    assert not marker.exists()


def test_cargo_zigbuild_is_told_the_rustc_version_it_would_ask_for(tmp_path: Path) -> None:
    """CARGO_ZIGBUILD_RUSTC_VERSION saves cargo-zigbuild's probes a `rustc -vV` each: it must be
    the `release:` that rustc says, and nothing when rustc cannot say (cargo-zigbuild then asks itself)."""
    said = subprocess.run(["rustc", "-vV"], capture_output=True, text=True, check=True).stdout
    [release] = [line.split(":", 1)[1].strip() for line in said.splitlines() if line.startswith("release:")]
    assert zig_backend.rustc_release(dict(os.environ), tmp_path) == release
    broken = tmp_path / "rustc"
    broken.write_text("#!/bin/sh\necho 'error: no toolchain' >&2\nexit 1\n")
    broken.chmod(0o755)
    assert zig_backend.rustc_release({**os.environ, "RUSTC": str(broken)}) is None
    assert zig_backend.rustc_release({**os.environ, "RUSTC": str(tmp_path / "absent")}) is None


def test_zig_knows_the_glibcs_it_can_target(centos7: lockfile.Lockfile, zig_settings: Settings) -> None:
    tools = zigtools.install(centos7, Store(zig_settings.cache), zig_settings.cache, log=quiet)
    assert {"2.17", "2.18", "2.31", "2.36"} <= set(tools.glibcs)
    assert tools.versions == "cargo-zigbuild 0.24.1, ziglang 0.17.1"


# ----------------------------------------------------------------------------- without Docker


def test_without_docker_the_error_names_the_zig_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent")
    with pytest.raises(DockerError, match="--backend zig` builds without Docker") as err:
        connect()
    assert err.value.exit_code == 6 and "\n" not in str(err.value)


def test_invoke_build_without_docker_is_one_line_exit_6(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INVOKE_COMPATBUILD_")}
    env.update(DOCKER_HOST="unix:///nonexistent", INVOKE_COMPATBUILD_CACHE=str(tmp_path / "cache"))
    proc = subprocess.run([sys.executable, "-m", "invoke", "build", "--out", str(tmp_path / "out")],
                          cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 6
    [line] = proc.stderr.strip().splitlines()
    assert "cannot reach the Docker daemon" in line and "--backend zig" in line


def test_smoke_after_a_zig_build_loads_offline_where_it_can(zig_settings: Settings, tmp_path: Path) -> None:
    """No Docker and no RPM pins: plain `invoke smoke` after a zig build loads it under the sysroots."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("INVOKE_COMPATBUILD_")}
    env.update(DOCKER_HOST="unix:///nonexistent", INVOKE_COMPATBUILD_CACHE=str(zig_settings.cache),
               INVOKE_COMPATBUILD_OUT=str(tmp_path / "out"), INVOKE_COMPATBUILD_TARGET="centos7")
    build = subprocess.run([sys.executable, "-m", "invoke", "build", "--backend", "zig"], cwd=PROJECT_ROOT, env=env,
                           capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr
    smoke = subprocess.run([sys.executable, "-m", "invoke", "smoke", "--no-current"], cwd=PROJECT_ROOT, env=env,
                           capture_output=True, text=True, timeout=600)
    assert smoke.returncode == 0, smoke.stderr
    said = smoke.stdout + smoke.stderr
    assert "The centos7 image is out of reach" in said and "bullseye (glibc 2.31)" in said, said
    assert "trixie (glibc 2.41)" in said and "--backend zig" not in said


def test_backend_is_a_checked_setting() -> None:
    assert Settings.from_mapping({}).backend == "docker"
    assert Settings.from_mapping({"backend": "zig"}).backend == "zig"
    assert Settings.from_mapping({}, backend="zig").backend == "zig"
    assert Settings.from_mapping({}).with_backend("zig").backend == "zig"
    with pytest.raises(ConfigError, match="compatbuild.backend must be one of docker, zig"):
        Settings.from_mapping({"backend": "podman"})
    with pytest.raises(ConfigError, match="--backend must be one of docker, zig"):
        Settings.from_mapping({}).with_backend("zgi")


# ----------------------------------------------------------------------------- the head start (headstart.py)


def _planned(centos7: lockfile.Lockfile, settings: Settings, crate: Path) -> tuple[pipeline.BuildResult, memo.Run]:
    first = pipeline.build(None, centos7, settings, crate, log=quiet, on_line=quiet)
    assert isinstance(first.plan, headstart.ProcessPlan)
    run = memo.Run(settings.cache, "build-plan", {"test": str(crate)})  # after the build: Cargo.lock is written
    headstart.save(run, pipeline.plan_watch(settings, centos7, first), headstart.HeadStart(), first.plan)
    assert run.path.is_file()
    return first, run


def _zig_edit(crate: Path, says: str) -> None:
    source = crate / "src" / "lib.rs"
    source.write_text(source.read_text().replace('"compatbuild"', f'"{says}"'))


def test_an_edited_zig_build_takes_the_run_its_head_start_began(
        centos7: lockfile.Lockfile, zig_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    crate = tmp_path / "hello"
    shutil.copytree(CRATES["hello"], crate, ignore=shutil.ignore_patterns("target"))
    settings = dataclasses.replace(zig_settings, out=tmp_path / "out")
    first, run = _planned(centos7, settings, crate)
    says = "compatbuild, built by zig from its head start"  # long: kept in .rodata as is
    _zig_edit(crate, says)
    early = headstart.start(run)
    assert early.plan == first.plan and isinstance(early.started, proc.Running)
    assert first.plan.cargo is not None and early.started.argv[:2] == ("cargo", "build")  # cargo-zigbuild's cargo
    linker = Path(first.plan.cargo.set["CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER"])
    assert linker in first.plan.named_files() and "zigcc" in linker.name
    own: list[object] = []
    monkeypatch.setattr(zig_backend, "start", lambda *a, **k: own.append(a))  # the build's own run: none
    lines: list[str] = []
    again = pipeline.build(None, centos7, settings, crate, log=lines.append, on_line=lines.append, early=early)
    assert own == [] and says.encode() in again.libraries[0].read_bytes()
    assert next(i for i, ln in enumerate(lines) if ln.startswith("Building hello")) < next(
        i for i, ln in enumerate(lines) if "Compiling hello" in ln)  # said in the order it always is
    again_plan = again.plan
    assert isinstance(again_plan, headstart.ProcessPlan) and again_plan == first.plan  # the same cargo, kept
    monkeypatch.setenv("COMPATBUILD_TEST_NEW_VARIABLE", "1")  # the plan ran in the environment it was made in
    assert headstart.start(run) == headstart.HeadStart()
    monkeypatch.delenv("COMPATBUILD_TEST_NEW_VARIABLE")
    linker.write_bytes(linker.read_bytes())  # cargo-zigbuild's wrapper rewritten: cargo is told of it
    assert headstart.start(run) == headstart.HeadStart()


def test_no_variable_value_of_the_users_is_kept_by_a_zig_plan(
        centos7: lockfile.Lockfile, zig_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    token = "Hunter2-zig-plan-token"
    monkeypatch.setenv("COMPATBUILD_TEST_TOKEN", token)
    crate = tmp_path / "hello"
    shutil.copytree(CRATES["hello"], crate, ignore=shutil.ignore_patterns("target"))
    settings = dataclasses.replace(zig_settings, out=tmp_path / "out")
    first, run = _planned(centos7, settings, crate)
    assert isinstance(first.plan, headstart.ProcessPlan) and first.plan.cargo is not None
    assert first.plan.cargo.environment()["COMPATBUILD_TEST_TOKEN"] == token  # cargo still gets it
    tdir = zig_backend.zig_target_dir(settings, centos7, first.crate)
    kept = [p for p in [*tdir.glob(".*"), *(settings.cache / "memo").iterdir()] if p.is_file()]
    assert run.path in kept and not [p for p in kept if token.encode() in p.read_bytes()]


def test_the_cargo_record_is_read_only_whole(tmp_path: Path) -> None:
    """What the shim wrote (the run it is of, an argument count, the arguments, the environment,
    NUL-separated) for this very run, or nothing; gone once read, whatever it held."""
    record = tmp_path / zig_backend.RECORD
    assert zig_backend._recorded_cargo(record, "run", "cargo", tmp_path, "x") is None  # none written
    good = b"run\n2\nbuild\0--release\0PATH=/usr/bin\0_=/bin/sh\0"
    record.write_bytes(good)
    cargo = zig_backend._recorded_cargo(record, "run", "cargo", tmp_path, "x")
    assert cargo is not None and cargo.argv[1:] == ("build", "--release") and cargo.environment()["PATH"] == "/usr/bin"
    assert "_" not in cargo.environment() and not record.exists()
    for bad in (good.replace(b"run", b"another run", 1), b"run\n3\nbuild\0", b"run\nx\nbuild\0PATH=/usr/bin\0",
                b"run\n1\nbuild\0", b"run\n\xff\n", b"run\n"):
        record.write_bytes(bad)  # another run's, cut short, garbled, no environment, not text
        assert zig_backend._recorded_cargo(record, "run", "cargo", tmp_path, "x") is None, bad
        assert not record.exists()


def test_the_cargo_shim_records_what_cargo_gets_and_runs_it(zig_settings: Settings, tmp_path: Path) -> None:
    shim = zig_backend.cargo_shim(dataclasses.replace(zig_settings, cache=tmp_path / "cache"))
    record = tmp_path / "record"
    env = {"PATH": os.environ["PATH"], "COMPATBUILD_CARGO": "echo", "COMPATBUILD_CARGO_RECORD": str(record),
           "COMPATBUILD_CARGO_FOR": "run", "KEPT": "a b"}
    done = subprocess.run([str(shim), "build", "two words", ""], env=env, capture_output=True, text=True, check=True)
    assert done.stdout == "build two words \n"  # the real one ran, with the very arguments
    assert record.stat().st_mode & 0o077 == 0  # every variable's value: the user's alone
    cargo = zig_backend._recorded_cargo(record, "run", "cargo", tmp_path, "x")
    assert cargo is not None and cargo.argv[1:] == ("build", "two words", "")
    seen = cargo.environment()
    assert seen["KEPT"] == "a b" and not any(k.startswith("COMPATBUILD_CARGO") for k in seen)
    assert not list(tmp_path.glob("record.*"))  # no temporary left


def test_a_zig_head_start_the_build_did_not_arrive_at_is_stopped(
        centos7: lockfile.Lockfile, zig_settings: Settings, tmp_path: Path) -> None:
    crate = tmp_path / "hello"
    shutil.copytree(CRATES["hello"], crate, ignore=shutil.ignore_patterns("target"))
    settings = dataclasses.replace(zig_settings, out=tmp_path / "out")
    first, _ = _planned(centos7, settings, crate)
    other = proc.start(["sleep", "60"], what="not this build", timeout=120, cwd=crate)
    _zig_edit(crate, "compatbuild, built by its own zig run")
    again = pipeline.build(None, centos7, settings, crate, log=quiet, on_line=quiet,
                           early=headstart.HeadStart(first.plan, other))
    assert b"built by its own zig run" in again.libraries[0].read_bytes()
    assert other._proc.poll() is not None  # killed, not waited for
    late = proc.start(["sleep", "60"], what="a build that failed first", timeout=120)
    headstart.HeadStart(first.plan, late).close()  # the task's `finally`: a run nobody took is stopped
    assert late._proc.poll() is not None
