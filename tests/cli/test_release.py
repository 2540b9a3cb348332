"""tasks.py is the user's pipeline file: its tasks call compatbuild's tasks as functions.

The worked example, `invoke release`, runs end to end on the test profile: for each crate,
build → audit → smoke, then the .so files, their audit JSON and SHA256SUMS in dist/.
Settings reach the composed calls through invoke config (INVOKE_COMPATBUILD_*).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tasks.settings import PROJECT_ROOT, Settings

NAMES = ["download", "verify", "lock", "rpms", "image", "llvm", "rust", "images", "build", "audit", "smoke",
         "sysroot", "test_profile"]


def test_tasks_py_binds_every_task_under_its_cli_name() -> None:
    """What `from tasks import build` gives a user's tasks.py (the module invoke loads)."""
    import importlib.util

    from invoke.tasks import Task

    spec = importlib.util.spec_from_file_location("compatbuild_tasks_py", PROJECT_ROOT / "tasks.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for name in NAMES:
        bound = getattr(module, name)
        assert isinstance(bound, Task), name
        assert bound.name == name.replace("_", "-")
    assert module.ns.tasks["release"] is module.release  # a user task joins the CLI


@pytest.mark.docker
def test_release_builds_audits_smokes_and_collects_a_checked_dist(
    profile_lock: Path, profile_settings: Settings, tmp_path: Path,
) -> None:
    dist = tmp_path / "dist"
    env = {**os.environ, "INVOKE_COMPATBUILD_LOCK": str(profile_lock),
           "INVOKE_COMPATBUILD_CACHE": str(profile_settings.cache),
           "INVOKE_COMPATBUILD_OUT": str(tmp_path / "out")}
    r = subprocess.run([sys.executable, "-m", "invoke", "release", "--crate", "examples/hello",
                        "--crate", "tests/crates/with_cc", "--dist", str(dist)],
                       cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=1200)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "warning" not in r.stderr  # every composed call resolved the same lockfile
    files = sorted(p.name for p in dist.iterdir())
    assert files == ["SHA256SUMS", "libhello.so", "libhello.so.audit.json", "libwith_cc.so",
                     "libwith_cc.so.audit.json"]
    for line in (dist / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split("  ")
        assert hashlib.sha256((dist / name).read_bytes()).hexdigest() == digest
    report = json.loads((dist / "libhello.so.audit.json").read_text())
    assert report["ok"] is True and report["target_glibc"] == "2.31"
    # the build's own outputs went where INVOKE_COMPATBUILD_OUT said, keyed by target
    assert (tmp_path / "out" / "bullseye-test" / "libhello.so").is_file()
    assert "smoke: test returned" in r.stdout


def _docs_compose_block() -> str:
    """The ``ship`` example of docs/composition.md, as a user would copy it."""
    text = (PROJECT_ROOT / "docs" / "composition.md").read_text()
    section = text.split("## The `ship` example", 1)[1].split("\n## ", 1)[0]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


def test_the_docs_composition_example_is_10_to_20_lines_of_real_code() -> None:
    block = _docs_compose_block()
    code = [ln for ln in block.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    assert 10 <= len(code) <= 20, block
    compile((PROJECT_ROOT / "tasks.py").read_text() + "\n" + block, "tasks.py", "exec")


@pytest.mark.docker
@pytest.mark.parametrize("crate", ["examples/hello", "tests/crates/pyo3_mod", "tests/crates/mlua_mod"])
def test_the_docs_composition_example_works_pasted_into_tasks_py(
    profile_lock: Path, profile_settings: Settings, tmp_path: Path, crate: str,
) -> None:
    """tasks.py with docs/composition.md's block pasted at its end: the new task lists, and runs."""
    pasted = (PROJECT_ROOT / "tasks.py").read_text() + "\n\n" + _docs_compose_block()
    (tmp_path / "pasted_tasks.py").write_text(pasted)
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "INVOKE_COMPATBUILD_LOCK": str(profile_lock),
           "INVOKE_COMPATBUILD_CACHE": str(profile_settings.cache), "INVOKE_COMPATBUILD_OUT": str(tmp_path / "out")}
    cmd = [sys.executable, "-m", "invoke", "--search-root", str(tmp_path), "-c", "pasted_tasks"]
    listed = subprocess.run([*cmd, "--list"], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert "ship " in listed.stdout and "release " in listed.stdout, listed.stdout + listed.stderr
    shipped = tmp_path / "ship"
    r = subprocess.run([*cmd, "ship", "--crate", crate, "--dest", str(shipped)], cwd=PROJECT_ROOT,
                       env=env, capture_output=True, text=True, timeout=1200)
    assert r.returncode == 0, r.stdout + r.stderr
    name = {"examples/hello": "libhello.so", "tests/crates/pyo3_mod": "libmymod.so",
            "tests/crates/mlua_mod": "libluamod.so"}[crate]
    assert (shipped / name).is_file()
    assert "target 2.17" in r.stdout and "ok  " in r.stdout  # the extra audit at Rust's floor passed
    if crate != "examples/hello":  # a plugin: smoke stubbed its host's API, unchanged code
        assert "symbols left to the host" in r.stdout, r.stdout


@pytest.mark.docker
def test_release_ships_plugins_each_run_in_its_own_host_program(
    profile_lock: Path, profile_settings: Settings, tmp_path: Path,
) -> None:
    """`invoke release` with one --host per --crate: the pyo3 module imported by python3, the
    mlua module required by lua5.1, in the profile's smoke image (bullseye's glibc 2.31)."""
    dist = tmp_path / "dist"
    env = {**os.environ, "INVOKE_COMPATBUILD_LOCK": str(profile_lock),
           "INVOKE_COMPATBUILD_CACHE": str(profile_settings.cache), "INVOKE_COMPATBUILD_OUT": str(tmp_path / "out")}
    r = subprocess.run([sys.executable, "-m", "invoke", "release",
                        "--crate", "tests/crates/pyo3_mod", "--host", 'python3 -c "import {module}"',
                        "--crate", "tests/crates/mlua_mod", "--host", """lua5.1 -e 'require("{module}")'""",
                        "--dist", str(dist)], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=1800)
    assert r.returncode == 0, r.stdout + r.stderr
    assert sorted(p.name for p in dist.iterdir()) == ["SHA256SUMS", "libluamod.so", "libluamod.so.audit.json",
                                                      "libmymod.so", "libmymod.so.audit.json"]
    assert "python3 ran it" in r.stdout and "lua5.1 ran it" in r.stdout, r.stdout
    too_many = subprocess.run([sys.executable, "-m", "invoke", "release", "--host", "python3 {path}",
                               "--host", "lua5.1 {path}", "--dist", str(tmp_path / "d2")], cwd=PROJECT_ROOT, env=env,
                              capture_output=True, text=True, timeout=120)
    assert too_many.returncode == 2 and too_many.stderr.strip() == (
        "release: 2 --host for 1 --crate; give one per crate, in order")
