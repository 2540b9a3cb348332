"""A second Docker daemon for the tests, reached over tcp:// on loopback: a "remote" one.

It has its own data-root, exec-root, pidfile and containerd namespace, no bridge and no
iptables rules, so it shares nothing with the machine's daemon: it cannot see a stage
image or a file of this machine except what is sent to it. Started by a session fixture
and stopped (its mounts released, its folder removed) at the end.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import docker.client
import docker.errors

from tasks.profile.registryd import free_port

DOCKERD = shutil.which("dockerd") or "/usr/sbin/dockerd"


@contextmanager
def running_dockerd(folder: Path, *, storage_driver: str = "fuse-overlayfs") -> Iterator[str]:
    """Run a dockerd whose state lives under ``folder``; yield its ``tcp://127.0.0.1:<port>``."""
    port = free_port()
    host = f"tcp://127.0.0.1:{port}"
    config = folder / "daemon.json"
    config.write_text(json.dumps({}))  # not the machine's /etc/docker/daemon.json
    log = (folder / "dockerd.log").open("wb")
    argv = [DOCKERD, "--config-file", str(config), "--data-root", str(folder / "data"),
            "--exec-root", str(folder / "exec"), "--pidfile", str(folder / "dockerd.pid"),
            "--host", host, "--bridge", "none", "--iptables=false", "--ip6tables=false",
            "--storage-driver", storage_driver, "--containerd-namespace", f"compatbuild-test-{port}",
            "--containerd-plugins-namespace", f"compatbuild-test-{port}-plugins"]
    bridge = _default_bridge()
    proc = subprocess.Popen(argv, stdout=log, stderr=log)  # noqa: S603
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                client = docker.client.DockerClient(base_url=host, timeout=5)
                client.ping()
                client.close()
                break
            except docker.errors.DockerException:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = (folder / "dockerd.log").read_text(errors="replace")[-600:]
                raise RuntimeError(f"a second dockerd on {host} did not start: {tail}")
            time.sleep(0.3)
        _restore_default_bridge(bridge)
        yield host
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        _restore_default_bridge(bridge)
        _unmount_below(folder)
        shutil.rmtree(folder / "data", ignore_errors=True)
        shutil.rmtree(folder / "exec", ignore_errors=True)


def _default_bridge() -> list[str]:
    """The addresses (``172.17.0.1/16``) of the machine daemon's bridge, docker0, if it has one."""
    done = subprocess.run(["ip", "-j", "addr", "show", "dev", "docker0"], capture_output=True, text=True,  # noqa: S603,S607
                          check=False)
    if done.returncode != 0:
        return []
    return [f"{a['local']}/{a['prefixlen']}" for link in json.loads(done.stdout or "[]")
            for a in link.get("addr_info", []) if a.get("family") == "inet"]


def _restore_default_bridge(addresses: list[str]) -> None:
    """Put docker0 back as it was. A dockerd started with ``--bridge none`` deletes the
    default bridge interface at start-up even though it is the machine daemon's, whose
    containers then cannot start ("could not find bridge docker0")."""
    if not addresses or _default_bridge():
        return
    steps = [["ip", "link", "add", "docker0", "type", "bridge"],
             *(["ip", "addr", "add", a, "dev", "docker0"] for a in addresses),
             ["ip", "link", "set", "docker0", "up"]]
    for step in steps:
        subprocess.run(step, check=True, capture_output=True)  # noqa: S603


def _unmount_below(folder: Path) -> None:
    """Release whatever the daemon left mounted under ``folder`` (its netns, overlay mounts)."""
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()
              if len(line.split()) > 1 and line.split()[1].startswith(str(folder))]
    for point in sorted(mounts, key=len, reverse=True):
        subprocess.run(["umount", "-l", point], check=False, capture_output=True)  # noqa: S603,S607
