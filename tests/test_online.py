"""The real pipeline, end to end, from the default lockfile's upstream pins.

Needs the internet (llvm.org, gnu.org, GitHub, static.rust-lang.org, Fedora's archive,
Docker Hub, CentOS's vault) and, for the llvm linker, hours for the LLVM stage; skipped unless
COMPATBUILD_ONLINE=1.
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


@pytest.mark.parametrize(("target", "glibc", "linker"), [
    ("fedora20", "2.18", "rust-lld"), ("fedora20", "2.18", "llvm"), ("centos7", "2.17", "rust-lld"),
])
def test_default_lockfile_builds_the_target_image_and_a_crate_that_loads_on_its_glibc(
    tmp_path: Path, target: str, glibc: str, linker: str,
) -> None:
    env = {"INVOKE_COMPATBUILD_OUT": str(tmp_path / "out"), "INVOKE_COMPATBUILD_TARGET": target,
           "INVOKE_COMPATBUILD_LINKER": linker}
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
    assert report["target"] == {"name": target, "glibc": glibc}
    r = invoke("smoke", "--lock", str(lock), env=env)
    assert r.returncode == 0, r.stderr
    assert f"{target} (glibc {glibc})" in r.stdout and "hello from compatbuild" in r.stdout
