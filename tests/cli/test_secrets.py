"""No credential reaches a user's screen: every message passes the one redaction (tasks.errors.redact)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tasks.errors import ConfigError, RegistryError, redact
from tasks.settings import PROJECT_ROOT

SECRET = "Hunter2pw"


def _invoke(*args: str, env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("INVOKE_COMPATBUILD_")}
    full.update({"INVOKE_COMPATBUILD_CACHE": str(tmp_path / "cache"), **env})
    return subprocess.run([sys.executable, "-m", "invoke", *args], cwd=PROJECT_ROOT, env=full,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(("args", "env"), [
    (["images"], {"DOCKER_HOST": f"tcp://deploy:{SECRET}@127.0.0.1:9"}),
    (["image", "--push", f"deploy:{SECRET}@127.0.0.1:9/team/x"], {"DOCKER_HOST": f"tcp://u:{SECRET}@127.0.0.1:9"}),
    (["download"], {"INVOKE_COMPATBUILD_MIRRORS": f'["https://deploy:{SECRET}@mirror.invalid/"]'}),
    (["download"], {"INVOKE_COMPATBUILD_MIRRORS": f'{{"https://a/": 3, "x": "https://u:p@{SECRET}@m/"}}'}),
])
def test_an_error_carrying_a_credential_prints_it_as_stars(args: list[str], env: dict[str, str],
                                                           tmp_path: Path) -> None:
    r = _invoke(*args, env=env, tmp_path=tmp_path)
    assert r.returncode != 0
    assert "Traceback" not in r.stderr
    assert SECRET not in r.stdout + r.stderr, r.stderr
    assert "***" in r.stderr, r.stderr


@pytest.mark.parametrize("text", [
    f"https://user:{SECRET}@host/x",
    f"https://user:p@{SECRET}@host/x",  # a raw '@' in the password
    f"user:{SECRET}@registry.example:5000/team/x",
    f"https://host/x?token={SECRET}&y=1",
    f"tcp://user:{SECRET}@[::1]:2375",
])
def test_the_one_redaction_hides_every_credential_form(text: str) -> None:
    assert SECRET not in redact(text)
    assert SECRET not in str(ConfigError(f"config value {text!r}"))  # errors redact themselves
    assert SECRET not in str(RegistryError(text))


def test_the_redaction_leaves_references_by_digest_alone() -> None:
    ref = "docker.io/library/fedora:20@sha256:" + "a" * 64
    assert redact(f"cannot pull {ref}") == f"cannot pull {ref}"
