"""A real OCI registry on loopback for the tests: Debian's ``docker-registry`` (distribution).

Started by a session fixture with its own config and storage in a temporary folder, on
127.0.0.1:<free port>, and stopped at the end. The Docker daemon trusts 127.0.0.0/8
registries without TLS, so ``127.0.0.1:<port>/...`` pushes and pulls as it is.
"""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REGISTRY_BIN = Path("/usr/bin/docker-registry")
CONFIG = """\
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: {root}
  delete:
    enabled: true
http:
  addr: 127.0.0.1:{port}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def running_registry(folder: Path) -> Iterator[str]:
    """Run a registry storing under ``folder``; yield its ``127.0.0.1:<port>`` address."""
    if not REGISTRY_BIN.is_file():
        raise RuntimeError(f"{REGISTRY_BIN} is missing: apt-get install docker-registry")
    port = free_port()
    (folder / "data").mkdir(parents=True, exist_ok=True)
    config = folder / "config.yml"
    config.write_text(CONFIG.format(root=folder / "data", port=port))
    log = (folder / "registry.log").open("wb")
    proc = subprocess.Popen([str(REGISTRY_BIN), "serve", str(config)], stdout=log, stderr=log)  # noqa: S603
    address = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://{address}/v2/", timeout=2) as r:  # noqa: S310 - loopback
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"docker-registry did not start: {(folder / 'registry.log').read_text()[-500:]}")
            time.sleep(0.1)
        yield address
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()

