"""A run with nothing to do is replayed from its record (tasks/memo.py), as a user runs it:
the same output, and neither the pipeline nor a heavy library loaded; a change goes the whole way."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tasks.settings import PROJECT_ROOT, Settings

pytestmark = pytest.mark.docker

HELLO = PROJECT_ROOT / "examples" / "hello"
# the pipeline, the heavy libraries, and the classes of a build's or a smoke's value: the command
# line drops what a task returns, so its replay does not unpickle it (tasks.cli.common.value_is_used)
HEAVY = ("tasks.pipeline", "docker", "requests", "elftools", "gnupg", "tomlkit", "tasks.elf.audit",
         "tasks.backends.outputs", "tasks.dlopen.result")


def _run(env: dict[str, str], *args: str) -> tuple[str, set[str]]:
    """stdout of ``invoke ARGS`` (it must succeed) and the modules it imported."""
    r = subprocess.run([sys.executable, "-X", "importtime", "-m", "invoke", *args], cwd=PROJECT_ROOT, env=env,
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    modules = {ln.rsplit("|", 1)[-1].strip() for ln in r.stderr.splitlines() if ln.startswith("import time:")}
    return r.stdout, modules


def _heavy(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if m in HEAVY)


@pytest.fixture()
def user(profile_settings: Settings, tmp_path: Path) -> tuple[dict[str, str], Path]:
    """A user's environment on the shared test-profile store, with an output folder and a crate of their own."""
    crate = tmp_path / "hello"
    shutil.copytree(HELLO, crate, ignore=shutil.ignore_patterns("target"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("INVOKE_COMPATBUILD_")}
    env.update(INVOKE_COMPATBUILD_CACHE=str(profile_settings.cache), INVOKE_COMPATBUILD_OUT=str(tmp_path / "out"),
               INVOKE_COMPATBUILD_LOCK=str(profile_settings.lock))
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env, crate


@pytest.mark.parametrize("backend", ["docker", "zig"])
def test_a_build_with_nothing_changed_is_replayed_and_an_edit_builds(
        user: tuple[dict[str, str], Path], backend: str) -> None:
    env, crate = user
    build = ("build", "--backend", backend, "--crate", str(crate))
    first, _ = _run(env, *build)
    assert "Built " in first
    if backend == "docker":  # as its cargo fetch may rewrite Cargo.lock: the build stamp answers, not a record
        (crate / "Cargo.lock").touch()
    quiet, _ = _run(env, *build)  # nothing to do: recorded
    assert "Built " not in quiet and quiet.splitlines()[-1].endswith("libhello.so")
    assert first.endswith(quiet)  # the first run's answer (its audit, the library) without its progress
    replayed, loaded = _run(env, *build)
    assert _heavy(loaded) == [], "a replay loads no pipeline"
    assert replayed == quiet
    with (crate / "src" / "lib.rs").open("a") as f:
        f.write("// an edit\n")
    edited, loaded = _run(env, *build)
    assert "tasks.pipeline" in loaded and "Built " in edited
    again, loaded = _run(env, *build)
    assert _heavy(loaded) == [] and again == quiet


def test_a_zig_build_is_not_replayed_under_another_cargo_environment(user: tuple[dict[str, str], Path]) -> None:
    env, crate = user
    build = ("build", "--backend", "zig", "--crate", str(crate))
    _run(env, *build)
    _run(env, *build)
    _, loaded = _run(env, *build)
    assert _heavy(loaded) == []
    _, loaded = _run({**env, "CARGO_TERM_PROGRESS_WHEN": "never"}, *build)
    assert "tasks.pipeline" in loaded  # a CARGO_* variable cargo reads: the whole run decides


def test_a_cached_smoke_is_replayed_with_its_words(user: tuple[dict[str, str], Path]) -> None:
    env, crate = user
    _run(env, "build", "--crate", str(crate))
    _run(env, "smoke")  # may run the harness: not recorded
    cached, _ = _run(env, "smoke")  # uses the verdict: recorded
    replayed, loaded = _run(env, "smoke")
    assert _heavy(loaded) == [] and replayed == cached
    assert "Using cached smoke result for libhello.so" in replayed
    _run(env, "build", "--crate", str(crate), "--no-fix-weak")  # other bytes: smoked again
    _, loaded = _run(env, "smoke")
    assert "tasks.pipeline" in loaded


def test_cached_download_and_verify_are_replayed(user: tuple[dict[str, str], Path]) -> None:
    env, _ = user
    _run(env, "download", "verify")
    cached, _ = _run(env, "download", "verify")
    replayed, loaded = _run(env, "download", "verify")
    assert _heavy(loaded) == [] and replayed == cached
    assert "cached" in replayed.splitlines()[-1]


def test_a_replayed_build_called_by_a_task_of_the_users_returns_its_result(
        user: tuple[dict[str, str], Path], tmp_path: Path) -> None:
    env, crate = user
    build = ("build", "--crate", str(crate))
    _run(env, *build)
    _run(env, *build)  # recorded
    dist = tmp_path / "dist"
    released, loaded = _run(env, "release", "--crate", str(crate), "--dist", str(dist))  # tasks.py: build(c, ...)
    assert "Building " not in released and "Released " in released  # its build replayed, its value used:
    audit = json.loads((dist / "libhello.so.audit.json").read_text())  # the recorded audit, for real
    assert audit["ok"] is True and audit["path"].endswith("libhello.so") and "tasks.elf.audit" in loaded
