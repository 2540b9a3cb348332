"""The real pipeline, end to end, from the default lockfile's upstream pins.

Needs the internet (llvm.org, gnu.org, GitHub, static.rust-lang.org, Fedora's archive,
Docker Hub) and hours for the LLVM stage; skipped unless COMPATBUILD_ONLINE=1.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tasks.settings import PROJECT_ROOT

pytestmark = pytest.mark.online


def invoke(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "invoke", *args], cwd=PROJECT_ROOT, env={**os.environ, **env},
                          capture_output=True, text=True, timeout=6 * 3600)


def test_default_lockfile_builds_the_fedora20_image_and_a_crate_that_loads_on_glibc_2_18(tmp_path: Path) -> None:
    env = {"INVOKE_COMPATBUILD_OUT": str(tmp_path / "out")}
    lock = tmp_path / "rsrc.lock.toml"
    lock.write_text((PROJECT_ROOT / "rsrc.lock.toml").read_text())
    for step in (["download", "--lock", str(lock)], ["verify", "--lock", str(lock)],
                 ["rpms", "--refresh", "--lock", str(lock)], ["image", "--lock", str(lock)]):
        r = invoke(*step, env=env)
        assert r.returncode == 0, (step, r.stdout[-3000:], r.stderr)
    r = invoke("build", "--json", "--lock", str(lock), env=env)
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["audit"] and all(a["ok"] for a in report["audit"])
    r = invoke("smoke", "--lock", str(lock), env=env)
    assert r.returncode == 0, r.stderr
    assert "fedora20 (glibc 2.18)" in r.stdout and "hello from compatbuild" in r.stdout
