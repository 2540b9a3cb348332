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


def test_the_aarch64_docker_route_cross_links_in_centos7s_builder_and_loads_under_qemu(tmp_path: Path) -> None:
    """centos7-aarch64 by the docker backend (tasks/backends/cross.py): centos7's x86_64 builder, the
    aarch64 rust-std and AltArch RPMs; then its RPM sysroot (glibc 2.17) joins `smoke --matrix` under qemu."""
    env = {"INVOKE_COMPATBUILD_OUT": str(tmp_path / "out"), "INVOKE_COMPATBUILD_LINKER": "rust-lld"}
    lock = tmp_path / "rsrc.lock.toml"
    lock.write_text((PROJECT_ROOT / "rsrc.lock.toml").read_text())
    for target in ("centos7", "centos7-aarch64"):
        r = invoke("rpms", "--refresh", "--lock", str(lock), env={**env, "INVOKE_COMPATBUILD_TARGET": target})
        assert r.returncode == 0, (target, r.stdout[-3000:], r.stderr)
    env["INVOKE_COMPATBUILD_TARGET"] = "centos7-aarch64"
    r = invoke("build", "--json", "--lock", str(lock), env=env)
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert [a["arch"] for a in report["audit"]] == ["aarch64"] and all(a["ok"] for a in report["audit"])
    r = invoke("smoke", "--matrix", "--json", "--lock", str(lock), env=env)
    assert r.returncode == 0, r.stderr
    cells = {c["place"]: c for c in json.loads(r.stdout)["cells"]}
    assert cells["centos7-aarch64"]["loaded"] is True and cells["centos7-aarch64"]["how"] == "qemu"
