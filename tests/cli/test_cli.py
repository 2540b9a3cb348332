"""The invoke layer as a user meets it: --list, --help, config from env, one-line errors."""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tasks.errors import ConfigError
from tasks.inputs import lockfile
from tasks.settings import PROJECT_ROOT

TASKS = ["download", "verify", "lock", "rpms", "image", "llvm", "rust", "images", "build",
         "audit", "smoke", "sysroot", "test-profile"]


def invoke(*args: str, cache: Path | None = None, cwd: Path = PROJECT_ROOT,
           env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("INVOKE_COMPATBUILD_")}
    if cache is not None:
        full["INVOKE_COMPATBUILD_CACHE"] = str(cache)
    return subprocess.run([sys.executable, "-m", "invoke", *args], cwd=cwd, env={**full, **(env or {})},
                          capture_output=True, text=True, timeout=300)


def test_list_shows_every_task_with_one_line_help() -> None:
    out = invoke("--list").stdout
    for name in TASKS:
        line = next((ln for ln in out.splitlines() if ln.strip().startswith(name + " ")), "")
        assert len(line.split()) > 2, f"{name} has no help text in --list:\n{out}"


@pytest.mark.parametrize("name", TASKS)
def test_help_explains_every_flag(name: str) -> None:
    from tasks.cli import ns

    params = {p.replace("_", "-") for p in list(inspect.signature(ns[name].body).parameters)[1:]}
    out = invoke("--help", name).stdout
    lines = [line for line in out.splitlines() if line.strip().startswith("-")]
    for line in lines:
        assert len(line.split()) > 1, f"flag without help: {line!r}"
    assert {re.sub(r"^--(\[no-\])?|=.*$", "", line.split()[0]) for line in lines} == params
    if name != "test-profile":  # it writes a lockfile; every other task reads one
        assert "lock" in params


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
        (["verify", "--lock", "{good}"], 14, "not downloaded; run `invoke download`"),
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


def _one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("compatbuild: "), lines
    return lines[0].removeprefix("compatbuild: ")


JOBS_RULE = "must be a whole number of 1 or more, not"
MIRRORS_RULE = ("config compatbuild.mirrors must be a mapping of URL prefix to replacement "
                "(in the environment: a JSON object), not 'notadict'")


@pytest.mark.parametrize(
    ("env", "yaml", "flags", "text"),
    [
        ({"INVOKE_COMPATBUILD_JOBS": "abc"}, "", [], f"config compatbuild.jobs {JOBS_RULE} 'abc'"),
        ({"INVOKE_COMPATBUILD_JOBS": "0"}, "", [], f"config compatbuild.jobs {JOBS_RULE} '0'"),
        ({}, "jobs: 0", [], f"config compatbuild.jobs {JOBS_RULE} 0"),
        ({}, "jobs: true", [], f"config compatbuild.jobs {JOBS_RULE} True"),
        ({}, "", ["--jobs", "0"], f"--jobs {JOBS_RULE} '0'"),
        ({}, "", ["--jobs", "abc"], f"--jobs {JOBS_RULE} 'abc'"),
        ({}, "jbos: 4", [], "config compatbuild.jbos: unknown setting (did you mean jobs?)"),
        ({"INVOKE_COMPATBUILD_JBOS": "4"}, "", [],
         "INVOKE_COMPATBUILD_JBOS: unknown setting (did you mean INVOKE_COMPATBUILD_JOBS?)"),
        ({}, "progress: bogus", [],
         "config compatbuild.progress must be one of auto, always, never, not 'bogus'"),
        ({"INVOKE_COMPATBUILD_PROGRESS": "bogus"}, "", [],
         "config compatbuild.progress must be one of auto, always, never, not 'bogus'"),
        ({}, 'mirrors: "notadict"', [], MIRRORS_RULE),
        ({"INVOKE_COMPATBUILD_MIRRORS": "notadict"}, "", [], MIRRORS_RULE),
        ({}, "out: [1]", [], "config compatbuild.out must be a path, not [1]"),
    ],
)
def test_bad_settings_are_one_line_with_their_own_exit_code(
        tmp_path: Path, env: dict[str, str], yaml: str, flags: list[str], text: str) -> None:
    lock = _file_lock(tmp_path, b"payload")
    config = tmp_path / "invoke.yaml"
    config.write_text(f"compatbuild:\n  {yaml}\n")
    runtime = ["-f", str(config)] if yaml else []
    r = invoke(*runtime, "download", "--lock", str(lock), *flags, cache=tmp_path / "cache", env=env)
    assert r.returncode == ConfigError.exit_code, (r.stdout, r.stderr)
    assert _one_line_error(r) == text
    assert not (tmp_path / "cache").exists()  # refused before anything was done


@pytest.mark.parametrize("source", ["yaml", "env"])
def test_good_settings_from_config_and_env_are_used(tmp_path: Path, source: str) -> None:
    """mirrors (a mapping, which invoke cannot take from the environment) and jobs, both ways."""
    lock = _file_lock(tmp_path, b"mirrored payload")
    mirror = tmp_path.as_uri() + "/"
    lock.write_text(lock.read_text().replace(mirror, "https://upstream.invalid/"))
    if source == "yaml":
        config = tmp_path / "invoke.yaml"
        config.write_text(f'compatbuild:\n  jobs: 2\n  progress: never\n'
                          f'  mirrors:\n    "https://upstream.invalid/": "{mirror}"\n')
        r = invoke("-f", str(config), "download", "--lock", str(lock), cache=tmp_path / "c")
    else:
        env = {"INVOKE_COMPATBUILD_JOBS": "2", "INVOKE_COMPATBUILD_PROGRESS": "never",
               "INVOKE_COMPATBUILD_MIRRORS": json.dumps({"https://upstream.invalid/": mirror})}
        r = invoke("download", "--lock", str(lock), "--jobs", "3", cache=tmp_path / "c", env=env)
    assert r.returncode == 0, r.stderr
    assert f"Downloading artifact thing ({mirror}thing-1.0.tar.gz)" in r.stdout
    assert r.stdout.strip().splitlines()[-1] == "1 file: 1 downloaded (16 bytes), 0 cached"


def test_docker_not_running_is_one_line_exit_6(tmp_path: Path) -> None:
    env = {**os.environ, "DOCKER_HOST": f"unix://{tmp_path}/no-docker.sock"}
    r = subprocess.run([sys.executable, "-m", "invoke", "image"], cwd=PROJECT_ROOT, env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 6
    assert "Traceback" not in r.stderr
    assert r.stderr.startswith("compatbuild: cannot reach the Docker daemon")
    assert len(r.stderr.strip().splitlines()) == 1


@pytest.mark.docker
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
    audit_217 = [sys.executable, "-m", "invoke", "audit", "--json", "--glibc", "2.17", "--lock", str(profile_lock)]
    a = subprocess.run(audit_217, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=60)
    audit = json.loads(a.stdout)  # defaults to the last build's libraries
    # built on bullseye (2.31), but std's needs above 2.17 are all weak, and the fix-up says so
    assert a.returncode == 0 and audit["ok"] is True, a.stdout
    weak = {n["version"] for n in audit["libraries"][0]["version_needs"] if n["weak"]}
    assert "GLIBC_2.18" in weak and "GLIBC_2.28" in weak and "GLIBC_2.30" in weak
    # without the fix-up the linker's hard GLIBC_2.18 need (a weak symbol) fails the same audit
    unfixed = ["build", "--json", "--no-fix-weak", "--lock", str(profile_lock)]
    r = subprocess.run([sys.executable, "-m", "invoke", *unfixed], cwd=PROJECT_ROOT, env=env,
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr
    a = subprocess.run(audit_217, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert a.returncode == 10 and json.loads(a.stdout)["ok"] is False
    too_new = json.loads(a.stdout)["libraries"][0]["too_new"]
    assert {"name": "__cxa_thread_atexit_impl", "version": "GLIBC_2.18"}.items() <= next(
        s for s in too_new if s["name"] == "__cxa_thread_atexit_impl").items()


def test_a_flag_given_to_the_next_task_is_warned_about_before_any_work(tmp_path: Path) -> None:
    """`invoke download verify --lock L` gives --lock to verify only: say so, at once."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    default, other = _file_lock(tmp_path / "a", b"one"), _file_lock(tmp_path / "b", b"two")
    result = invoke("download", "verify", "--lock", str(other), cache=tmp_path / "cache",
                    env={"INVOKE_COMPATBUILD_LOCK": str(default)})
    lines = result.stderr.splitlines()
    assert lines[0].startswith("compatbuild: warning: --lock on this command line belongs to another task")
    assert str(default) in lines[0]
    assert any(f"this task uses {other}" in ln and f"used {default}" in ln for ln in lines[1:]), lines
    # given to each task, nothing is said
    quiet = invoke("download", "--lock", str(other), "verify", "--lock", str(other), cache=tmp_path / "cache")
    assert quiet.returncode == 0, quiet.stderr
    assert "warning" not in quiet.stderr


def test_target_and_linker_come_from_config_and_flags(tmp_path: Path) -> None:
    from tasks.errors import LockfileError
    from tasks.settings import Settings

    s = Settings.from_mapping({"target": "centos7", "linker": "rust-lld"})
    assert (s.target, s.linker) == ("centos7", "rust-lld")
    assert Settings.from_mapping({"target": "centos7"}, target="fedora20").target == "fedora20"
    from tasks.pipeline import load_lock as lock_of

    lock = lock_of(Settings.from_mapping({}, target="centos7", linker="rust-lld"))
    assert (lock.target.name, lock.target.glibc, lock.linker) == ("centos7", "2.17", "rust-lld")
    with pytest.raises(LockfileError, match="no target 'centos8' \\(targets: fedora20, centos7, centos7-aarch64\\)"):
        lock_of(Settings.from_mapping({}, target="centos8"))
    with pytest.raises(LockfileError, match="--linker must be one of llvm, rust-lld, not 'gold'"):
        lock_of(Settings.from_mapping({}, linker="gold"))
    bad = invoke("verify", "--target", "centos8", cache=tmp_path / "c")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1, bad.stderr
