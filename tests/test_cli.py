"""The invoke layer as a user meets it: --list, --help, config from env, one-line errors."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tasks.inputs import lockfile
from tasks.settings import PROJECT_ROOT

TASKS = ["download", "verify", "lock", "rpms", "image", "llvm", "rust", "images", "build",
         "audit", "smoke", "sysroot", "test-profile"]


def invoke(*args: str, cache: Path | None = None, cwd: Path = PROJECT_ROOT) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if cache is not None:
        env["INVOKE_COMPATBUILD_CACHE"] = str(cache)
    return subprocess.run([sys.executable, "-m", "invoke", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_list_shows_every_task_with_one_line_help() -> None:
    out = invoke("--list").stdout
    for name in TASKS:
        line = next((ln for ln in out.splitlines() if ln.strip().startswith(name + " ")), "")
        assert len(line.split()) > 2, f"{name} has no help text in --list:\n{out}"


@pytest.mark.parametrize("name", ["download", "build", "smoke", "audit"])
def test_help_explains_every_flag(name: str) -> None:
    out = invoke("--help", name).stdout
    assert "--lock" in out or name == "audit"
    for line in out.splitlines():
        if line.strip().startswith("-"):
            assert len(line.split()) > 1, f"flag without help: {line!r}"


def _file_lock(tmp_path: Path, payload: bytes, *, sha: str | None = None) -> Path:
    art = tmp_path / "thing-1.0.tar.gz"
    art.write_bytes(payload)
    digest = sha or hashlib.sha256(payload).hexdigest()
    lock = tmp_path / "lock.toml"
    lock.write_text(
        "schema = 1\n[target]\nname = \"t\"\nglibc = \"2.31\"\n[base]\nimage = \"x/y:1\"\n"
        f"id = \"sha256:{'0' * 64}\"\n[[artifact]]\nname = \"thing\"\nurl = \"{art.as_uri()}\"\n"
        f"sha256 = \"{digest}\"\n"
    )
    return lock


def test_download_and_verify_then_a_quiet_second_run(tmp_path: Path) -> None:
    lock = _file_lock(tmp_path, b"payload" * 1000)
    first = invoke("download", "--lock", str(lock), cache=tmp_path / "cache")
    assert first.returncode == 0, first.stderr
    assert "Downloading artifact thing" in first.stdout
    assert (tmp_path / "cache" / "CACHEDIR.TAG").is_file()  # INVOKE_COMPATBUILD_CACHE moved it
    second = invoke("download", "--lock", str(lock), cache=tmp_path / "cache")
    assert second.returncode == 0
    assert second.stdout.strip().splitlines() == ["1 file: 0 downloaded, 1 cached"]
    v = invoke("verify", "--lock", str(lock), cache=tmp_path / "cache")
    assert v.returncode == 0, v.stderr
    assert "Verified thing: sha256" in v.stdout


@pytest.mark.parametrize(
    ("args", "code", "text"),
    [
        (["download", "--lock", "{bad}"], 2, "not valid TOML"),
        (["download", "--lock", "{missing}"], 2, "lockfile not found"),
        (["download", "--lock", "{wrong}"], 4, "sha256 mismatch"),
        (["verify", "--lock", "{good}"], 3, "not downloaded; run `invoke download`"),
        (["audit", "--path", "{notelf}"], 10, "not a readable ELF shared object"),
    ],
)
def test_user_errors_are_one_line_with_exit_code(tmp_path: Path, args: list[str], code: int, text: str) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("schema = [")
    wrong = _file_lock(tmp_path / "w" if (tmp_path / "w").mkdir() is None else tmp_path, b"x", sha="1" * 64)
    good = _file_lock(tmp_path / "g" if (tmp_path / "g").mkdir() is None else tmp_path, b"y")
    notelf = tmp_path / "lib.so"
    notelf.write_text("not an elf")
    paths = {"bad": bad, "missing": tmp_path / "nope.toml", "wrong": wrong, "good": good, "notelf": notelf}
    result = invoke(*[a.format(**{k: str(v) for k, v in paths.items()}) for a in args], cache=tmp_path / "c")
    assert result.returncode == code, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("compatbuild: ") and text in lines[0], lines


def test_docker_not_running_is_one_line_exit_6(tmp_path: Path) -> None:
    env = {**os.environ, "DOCKER_HOST": f"unix://{tmp_path}/no-docker.sock"}
    r = subprocess.run([sys.executable, "-m", "invoke", "image"], cwd=PROJECT_ROOT, env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 6
    assert "Traceback" not in r.stderr
    assert r.stderr.startswith("compatbuild: cannot reach the Docker daemon")
    assert len(r.stderr.strip().splitlines()) == 1


def test_build_and_audit_json_for_ci(profile_lock: Path, profile_settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """`invoke build --json` then `invoke audit --json`: stdout is JSON only, logs go to stderr."""
    env = {**os.environ, "INVOKE_COMPATBUILD_CACHE": str(profile_settings.cache),
           "INVOKE_COMPATBUILD_OUT": str(tmp_path / "out")}
    r = subprocess.run([sys.executable, "-m", "invoke", "build", "--json", "--lock", str(profile_lock)],
                       cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    [lib] = report["libraries"]
    target = lockfile.load(profile_lock).target.name  # outputs are keyed by target
    assert lib == str(tmp_path / "out" / target / "libhello.so") and Path(lib).is_file()
    assert report["audit"][0]["ok"] is True
    a = subprocess.run([sys.executable, "-m", "invoke", "audit", "--json", "--glibc", "2.17"],
                       cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=60)
    audit = json.loads(a.stdout)  # defaults to the last build's libraries
    assert a.returncode == 10 and audit["ok"] is False  # bullseye's glibc 2.31 is newer than 2.17
    assert any(s["version"].startswith("GLIBC_2.") for s in audit["libraries"][0]["too_new"])
