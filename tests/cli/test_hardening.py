"""The task layer's contracts under hostile use (issue 18 §4, §5): every way a run ends is one
line and a stable exit code, a closed stdout ends quietly, and every `--json` run prints its
document, also when it fails.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from invoke.config import Config
from invoke.context import Context

from tasks.errors import AuditError, ConfigError, DockerError, OutputError, SmokeError, SysrootError
from tasks.settings import PROJECT_ROOT
from tests.support.elfcraft import shared_object

LIBZ = "/lib/x86_64-linux-gnu/libz.so.1"  # passes at 2.36, a few lines of report
LIBC = "/lib/x86_64-linux-gnu/libc.so.6"  # fails at 2.17, hundreds of lines
NO_DOCKER = {"DOCKER_HOST": "unix:///nonexistent"}


def invoke(*args: str, tmp_path: Path, env: dict[str, str] | None = None,
           stdout: int | None = subprocess.PIPE) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("INVOKE_COMPATBUILD_")}
    full.update(INVOKE_COMPATBUILD_CACHE=str(tmp_path / "cache"), INVOKE_COMPATBUILD_OUT=str(tmp_path / "out"))
    return subprocess.run([sys.executable, "-m", "invoke", *args], cwd=PROJECT_ROOT, env={**full, **(env or {})},
                          stdout=stdout, stderr=subprocess.PIPE, text=True, timeout=300)


def one_line(r: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in r.stderr and "Exception ignored" not in r.stderr, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("compatbuild: "), lines
    return lines[0].removeprefix("compatbuild: ")


# ----------------------------------------------------------------------------- a closed stdout


def closed_stdout(*args: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """Run with stdout a pipe whose reader is gone, as `invoke audit | head -1` after head exits."""
    reader, writer = os.pipe()
    os.close(reader)
    try:
        return invoke(*args, tmp_path=tmp_path, stdout=writer)
    finally:
        os.close(writer)


@pytest.mark.parametrize("args", [
    ["audit", "--glibc", "2.36", "--path", LIBZ],  # a short report: written when the task returns
    ["audit", "--glibc", "2.17", "--path", LIBC],  # a long one: the pipe breaks mid-report
    ["audit", "--json", "--glibc", "2.36", "--path", LIBZ],
], ids=["short", "long", "json"])
def test_a_closed_stdout_ends_quietly_with_141(tmp_path: Path, args: list[str]) -> None:
    r = closed_stdout(*args, tmp_path=tmp_path)
    assert (r.returncode, r.stderr) == (141, "")


def test_an_error_with_a_closed_stdout_keeps_its_line_and_code(tmp_path: Path) -> None:
    r = closed_stdout("audit", "--glibc", "2.17", "--path", str(tmp_path / "absent.so"), tmp_path=tmp_path)
    assert r.returncode == AuditError.exit_code
    assert "No such file" in one_line(r)


# ----------------------------------------------------------------------------- invoke.yaml


@pytest.mark.parametrize(("text", "says"), [
    ("compatbuild: hello\n", "config compatbuild must be a mapping of settings, not 'hello'"),
    ("compatbuild:\n  jobs: {a: 1}\n", "config compatbuild.jobs must be a whole number of 1 or more, not {'a': 1}"),
    ("compatbuild:\n  registry: {a: 1}\n", "config compatbuild.registry must be a name, not {'a': 1}"),
    ("compatbuild: [1, 2\n  : :\n", "not YAML: expected ',' or ']', but got ':' (line 2, column 3)"),
    ("- a\n- b\n", "not a mapping of settings sections (such as `compatbuild:`), but a list"),
], ids=["compatbuild-a-string", "jobs-a-mapping", "registry-a-mapping", "not-yaml", "a-list"])
def test_an_ill_shaped_invoke_yaml_is_one_line_naming_the_file(tmp_path: Path, text: str, says: str) -> None:
    config = tmp_path / "invoke.yaml"
    config.write_text(text)
    r = invoke("-f", str(config), "audit", "--glibc", "2.36", "--path", LIBZ, tmp_path=tmp_path)
    assert r.returncode == ConfigError.exit_code, r.stderr
    assert one_line(r) == f"{config}: {says}"
    assert r.stdout == ""


def test_an_error_a_task_meets_inside_invoke_config_keeps_its_traceback() -> None:
    """Only invoke's own loading of its files is worded as a config error, not a task's bug."""
    from tasks.cli import startup

    with pytest.raises(AttributeError) as caught:
        Config().no_such_setting  # noqa: B018 - raised inside invoke/config.py, called from here
    assert not startup._from_invoke_config(caught.value.__traceback__)


def test_a_config_whose_compatbuild_is_not_a_mapping_is_a_config_error() -> None:
    """A Context made by hand (a user's own program) reaches the settings without invoke's merge."""
    from tasks.cli.common import settings

    with pytest.raises(ConfigError, match="^config compatbuild must be a mapping of settings, not 'hello'$"):
        settings(Context(Config(overrides={"compatbuild": "hello"})))


# ----------------------------------------------------------------------------- DOCKER_HOST


def test_an_unparsable_docker_host_is_one_line_exit_6(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tasks.builder.docker_client import connect

    monkeypatch.setenv("DOCKER_HOST", "tcp://[::1")
    with pytest.raises(DockerError, match=r"tcp://\[::1") as caught:
        connect()
    assert "\n" not in str(caught.value)
    r = invoke("images", tmp_path=tmp_path, env={"DOCKER_HOST": "tcp://[::1"})
    assert r.returncode == DockerError.exit_code
    assert one_line(r).startswith("cannot reach the Docker daemon at tcp://[::1")


def test_a_docker_host_that_never_answers_is_bounded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A DOCKER_HOST that accepts and never answers: `images` waited 602 s; now the first answer is bounded."""
    import socket
    import time

    from tasks.builder import docker_client

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)  # accepts (the kernel's backlog), never answers
    host = f"tcp://127.0.0.1:{silent.getsockname()[1]}"
    try:
        monkeypatch.setenv("DOCKER_HOST", host)
        monkeypatch.setattr(docker_client, "CONNECT_TIMEOUT", 1.0)
        started = time.monotonic()
        with pytest.raises(DockerError, match=f"^cannot reach the Docker daemon at {host} .*no answer within 1 s"):
            docker_client.connect()
        assert time.monotonic() - started < 10
        started = time.monotonic()
        r = invoke("images", tmp_path=tmp_path, env={"DOCKER_HOST": host})  # the default bound: 15 s
        assert r.returncode == DockerError.exit_code and "no answer within 15 s" in one_line(r)
        assert time.monotonic() - started < 60
    finally:
        silent.close()


# ----------------------------------------------------------------------------- --json on failure


@pytest.mark.parametrize(("args", "env", "code", "shape"), [
    (["audit", "--json", "--path", "{missing}"], {}, AuditError.exit_code, "libraries"),
    (["audit", "--json", "--path", "{notelf}"], {}, AuditError.exit_code, "libraries"),
    (["audit", "--json"], {}, OutputError.exit_code, "libraries"),  # nothing built
    (["audit", "--json", "--glibc", "2.17", "--path", LIBC], {}, AuditError.exit_code, "libraries"),
    (["smoke", "--json", "--lib", LIBZ], NO_DOCKER, DockerError.exit_code, "results"),
    (["smoke", "--json", "--lib", LIBZ, "--sysroot", "{missing}"], NO_DOCKER, SysrootError.exit_code, "results"),
    (["build", "--json"], NO_DOCKER, DockerError.exit_code, "audit"),
    (["images", "--json"], NO_DOCKER, DockerError.exit_code, "images"),
    (["images", "--json", "--prune"], NO_DOCKER, DockerError.exit_code, "removed"),
], ids=["audit-missing", "audit-not-elf", "audit-nothing-built", "audit-violation", "smoke-no-docker",
        "smoke-bad-sysroot", "build-no-docker", "images-no-docker", "prune-no-docker"])
def test_every_json_run_prints_its_document_also_when_it_fails(
        tmp_path: Path, args: list[str], env: dict[str, str], code: int, shape: str) -> None:
    notelf = tmp_path / "libnotes.so"
    notelf.write_text("not a library\n")
    paths = {"missing": str(tmp_path / "absent.so"), "notelf": str(notelf)}
    r = invoke(*[a.format(**paths) for a in args], tmp_path=tmp_path, env=env)
    assert r.returncode == code, r.stderr
    assert "Traceback" not in r.stderr
    *_progress, last = r.stderr.strip().splitlines()  # with --json, progress goes to stderr too
    assert last.startswith("compatbuild: ")
    error = last.removeprefix("compatbuild: ")
    document = json.loads(r.stdout)
    assert document["ok"] is False and document["error"] == error
    assert isinstance(document[shape], list)


def test_a_passing_json_audit_says_ok_and_no_error(tmp_path: Path) -> None:
    r = invoke("audit", "--json", "--glibc", "2.36", "--path", LIBZ, tmp_path=tmp_path)
    assert r.returncode == 0, r.stderr
    document = json.loads(r.stdout)
    assert document["ok"] is True and document["error"] is None and len(document["libraries"]) == 1


def test_a_failing_matrix_json_carries_ok_and_the_error(tmp_path: Path) -> None:
    """The matrix loads without Docker; a library no place can load fails it, after its table."""
    absent = str(tmp_path / "absent.so")
    full = {k: v for k, v in os.environ.items() if not k.startswith("INVOKE_COMPATBUILD_")}
    r = subprocess.run([sys.executable, "-m", "invoke", "smoke", "--matrix", "--json", "--lib", absent],
                       cwd=PROJECT_ROOT, env={**full, **NO_DOCKER}, capture_output=True, text=True, timeout=600)
    assert r.returncode == SmokeError.exit_code, r.stderr
    document = json.loads(r.stdout)
    assert document["ok"] is False and document["error"] == r.stderr.strip().splitlines()[-1].removeprefix(
        "compatbuild: ")
    assert document["cells"] and all(cell["library"] == absent for cell in document["cells"])


# ----------------------------------------------------------------------------- audit --fix, one path twice

WEAK_ONLY_C = """\
#include <stdio.h>
extern int close_range(unsigned int first, unsigned int last, int flags) __attribute__((weak));
void test(void) { printf("close_range is %s\\n", close_range ? "present" : "null"); }
"""


def test_fix_given_one_library_twice_reports_what_it_changed_once(tmp_path: Path) -> None:
    lib = shared_object(tmp_path / "libweakonly.so", WEAK_ONLY_C)
    link = tmp_path / "liblink.so"
    link.symlink_to(lib)
    r = invoke("audit", "--fix", "--glibc", "2.31", "--path", str(lib), "--path", str(lib), "--path", str(link),
               tmp_path=tmp_path)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert [ln for ln in lines if not ln.startswith(" ")] == [f"ok   {lib} (max GLIBC 2.2.5, target 2.31)"]
    assert "  fix-up: made weak GLIBC_2.34 (libc.so.6) for close_range" in lines
    assert not any("nothing to change" in ln for ln in lines)
