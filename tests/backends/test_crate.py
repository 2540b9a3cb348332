"""tasks.backends.crate: what a crate path builds, read by cargo metadata and by tomllib alike."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tasks.backends.crate import inspect_crate
from tasks.backends.sources import find_sources
from tasks.backends.uptodate import listing
from tasks.errors import CompatError, CrateError

ROOT = Path(__file__).resolve().parents[2]
HELLO = ROOT / "examples" / "hello"
CRATES = Path(__file__).resolve().parents[1] / "crates"

HAVE_CARGO = shutil.which("cargo") is not None
MODES = [
    pytest.param(False, id="tomllib"),
    pytest.param(
        None, id="cargo"
    ),
]


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def package(root: Path, name: str, *, lib: str = "", crate_types: str = '["cdylib"]') -> Path:
    lines = [f'[package]\nname = "{name}"\nversion = "0.1.0"\nedition = "2021"\n']
    if crate_types:
        lines.append(f"[lib]\n{lib}crate-type = {crate_types}\n")
    write(root / "Cargo.toml", "".join(lines))
    write(root / "src" / "lib.rs", "")
    return root


@pytest.mark.parametrize("use_cargo", MODES)
def test_example_crate_builds_one_cdylib_named_hello(use_cargo: bool | None) -> None:
    info = inspect_crate(HELLO, use_cargo=use_cargo)
    assert info.name == "hello"
    assert info.cdylibs == ("hello",)
    assert info.library_files == ("libhello.so",)
    assert info.manifest == HELLO / "Cargo.toml"
    assert info.root == HELLO and info.workspace_root == HELLO
    assert not info.workspace


@pytest.mark.parametrize("use_cargo", MODES)
def test_hyphenated_package_gives_underscored_library(use_cargo: bool | None) -> None:
    info = inspect_crate(CRATES / "with_dep", use_cargo=use_cargo)
    assert (info.name, info.cdylibs) == ("with-dep", ("with_dep",))


@pytest.mark.parametrize("use_cargo", MODES)
def test_lib_name_and_extra_crate_types(tmp_path: Path, use_cargo: bool | None) -> None:
    package(tmp_path / "c", "my-pkg", lib='name = "plugin_x"\n', crate_types='["rlib", "cdylib"]')
    info = inspect_crate(tmp_path / "c", use_cargo=use_cargo)
    assert (info.name, info.cdylibs) == ("my-pkg", ("plugin_x",))


@pytest.mark.parametrize("use_cargo", MODES)
def test_path_to_cargo_toml_is_accepted(use_cargo: bool | None) -> None:
    assert inspect_crate(HELLO / "Cargo.toml", use_cargo=use_cargo).root == HELLO


@pytest.mark.parametrize("use_cargo", MODES)
def test_virtual_workspace_gives_cdylibs_of_all_members(
    tmp_path: Path, use_cargo: bool | None
) -> None:
    ws = tmp_path / "ws"
    write(ws / "Cargo.toml", '[workspace]\nmembers = ["plugins/*", "core"]\nresolver = "2"\n')
    package(ws / "plugins" / "alpha", "alpha")
    package(ws / "plugins" / "beta-two", "beta-two")
    package(ws / "core", "core", crate_types="")
    info = inspect_crate(ws, use_cargo=use_cargo)
    assert info.workspace
    assert sorted(info.cdylibs) == ["alpha", "beta_two"]
    assert info.workspace_root == ws.resolve()

    member = inspect_crate(ws / "plugins" / "beta-two", use_cargo=use_cargo)
    assert member.cdylibs == ("beta_two",)
    assert not member.workspace
    assert member.workspace_root == ws.resolve()


@pytest.mark.parametrize("use_cargo", MODES)
def test_workspace_without_any_cdylib_is_refused(tmp_path: Path, use_cargo: bool | None) -> None:
    ws = tmp_path / "ws"
    write(ws / "Cargo.toml", '[workspace]\nmembers = ["core"]\nresolver = "2"\n')
    package(ws / "core", "core", crate_types="")
    with pytest.raises(CrateError, match="no cdylib target"):
        inspect_crate(ws, use_cargo=use_cargo)


@pytest.mark.parametrize("use_cargo", MODES)
def test_plain_lib_is_refused_with_the_fix_in_the_message(use_cargo: bool | None) -> None:
    with pytest.raises(CrateError) as err:
        inspect_crate(CRATES / "no_cdylib", use_cargo=use_cargo)
    text = str(err.value)
    assert "no-cdylib" in text and "no cdylib target" in text
    assert "add `[lib] crate-type = [\"cdylib\"]` to Cargo.toml" in text and "\n" not in text
    assert err.value.exit_code == 8 and isinstance(err.value, CompatError)


@pytest.mark.parametrize("use_cargo", MODES)
def test_missing_path_is_refused(tmp_path: Path, use_cargo: bool | None) -> None:
    with pytest.raises(CrateError, match="no such crate directory"):
        inspect_crate(tmp_path / "nowhere", use_cargo=use_cargo)


@pytest.mark.parametrize("use_cargo", MODES)
def test_directory_without_cargo_toml_is_refused(tmp_path: Path, use_cargo: bool | None) -> None:
    (tmp_path / "src").mkdir()
    with pytest.raises(CrateError, match="no Cargo.toml"):
        inspect_crate(tmp_path, use_cargo=use_cargo)


@pytest.mark.parametrize("use_cargo", MODES)
def test_malformed_manifest_is_one_line_crate_error(tmp_path: Path, use_cargo: bool | None) -> None:
    write(tmp_path / "Cargo.toml", "[package\nname = 3\n")
    with pytest.raises(CrateError) as err:
        inspect_crate(tmp_path, use_cargo=use_cargo)
    assert "Cargo.toml" in str(err.value) or "cargo metadata failed" in str(err.value)


def test_missing_package_name_is_reported_by_the_toml_reader(tmp_path: Path) -> None:
    write(tmp_path / "Cargo.toml", '[lib]\ncrate-type = ["cdylib"]\n')
    with pytest.raises(CrateError, match=r"\[package\] name is missing"):
        inspect_crate(tmp_path, use_cargo=False)


# ----------------------------------------------------------------------------- sources


def test_path_dependency_outside_the_workspace_is_found_with_its_own_path_deps(tmp_path: Path) -> None:
    app = package(tmp_path / "app", "app")
    write(app / "Cargo.toml", (app / "Cargo.toml").read_text()
          + '[dependencies]\ncommon = { path = "../common" }\n'
          + '[target.\'cfg(unix)\'.build-dependencies]\nbuildhelp = { path = "../tools/buildhelp" }\n')
    common = package(tmp_path / "common", "common", crate_types="")
    write(common / "Cargo.toml", (common / "Cargo.toml").read_text()
          + '[dependencies]\ndeep = { path = "../deep", version = "0.1" }\n')
    package(tmp_path / "deep", "deep", crate_types="")
    package(tmp_path / "tools" / "buildhelp", "buildhelp", crate_types="")
    found = find_sources(inspect_crate(app, use_cargo=False))
    assert found.workspace == app.resolve()
    assert found.outside == tuple(sorted((tmp_path / d).resolve() for d in ("common", "deep", "tools/buildhelp")))
    assert (tmp_path / "deep" / "Cargo.toml").resolve() in found.manifests


def test_path_dependencies_inside_the_workspace_need_no_extra_mount(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    write(ws / "Cargo.toml", '[workspace]\nmembers = ["plugin", "core"]\nresolver = "2"\n'
          '[workspace.dependencies]\ncore = { path = "core" }\n[patch.crates-io]\nitoa = { path = "vendor/itoa" }\n')
    package(ws / "plugin", "plugin")
    package(ws / "core", "core", crate_types="")
    package(ws / "vendor" / "itoa", "itoa", crate_types="")
    found = find_sources(inspect_crate(ws / "plugin", use_cargo=False))
    assert found.workspace == ws.resolve() and found.outside == ()
    assert (ws / "vendor" / "itoa" / "Cargo.toml").resolve() in found.manifests


def test_path_dependency_in_another_workspace_mounts_that_workspace(tmp_path: Path) -> None:
    app = package(tmp_path / "app", "app")
    write(app / "Cargo.toml", (app / "Cargo.toml").read_text() + '[dependencies]\nlib1 = { path = "../other/lib1" }\n')
    write(tmp_path / "other" / "Cargo.toml",
          '[workspace]\nmembers = ["lib1"]\n[workspace.package]\nversion = "0.1.0"\n')
    package(tmp_path / "other" / "lib1", "lib1", crate_types="")
    found = find_sources(inspect_crate(app, use_cargo=False))
    assert found.outside == ((tmp_path / "other").resolve(),)  # its root manifest is read too


def test_missing_path_dependency_is_a_crate_error_naming_it(tmp_path: Path) -> None:
    app = package(tmp_path / "app", "app")
    write(app / "Cargo.toml", (app / "Cargo.toml").read_text() + '[dependencies]\ngone = { path = "../gone" }\n')
    with pytest.raises(CrateError, match="path dependency .*gone has no Cargo.toml"):
        find_sources(inspect_crate(app, use_cargo=False))


def test_a_path_dependency_that_is_a_symlink_loop_is_one_line(tmp_path: Path) -> None:
    app = package(tmp_path / "app", "app")
    (app / "loop_a").symlink_to("loop_b")
    (app / "loop_b").symlink_to("loop_a")
    write(app / "Cargo.toml", (app / "Cargo.toml").read_text() + '[dependencies]\nd = { path = "loop_a" }\n')
    with pytest.raises(CrateError, match=r"path dependency 'loop_a' cannot be resolved: Symlink loop") as err:
        find_sources(inspect_crate(app, use_cargo=False))
    assert "\n" not in str(err.value)


def test_fixture_pair_uses_common_from_outside_its_workspace() -> None:
    found = find_sources(inspect_crate(CRATES / "uses_common"))
    assert found.outside == ((CRATES / "common").resolve(),)


# ----------------------------------------------------------------------------- uptodate


def test_source_listing_sees_a_touched_file_but_not_target_dirs_or_outputs(tmp_path: Path) -> None:
    crate = package(tmp_path / "c", "c")
    write(crate / "target" / "CACHEDIR.TAG", "Signature: 8a477f597d28d172789f06886806bc55\n")
    write(crate / "out" / "libc.so", "copy")
    before = listing([crate], exclude=[crate / "out"])
    write(crate / "target" / "release" / "libc.so", "built")  # cargo's outputs: not inputs
    write(crate / "out" / "libc.so", "a new copy")  # ours: not inputs either
    assert listing([crate], exclude=[crate / "out"]) == before
    source = crate / "src" / "lib.rs"
    os.utime(source, ns=(source.stat().st_atime_ns, source.stat().st_mtime_ns + 1))
    assert listing([crate], exclude=[crate / "out"]) != before
