"""Registry dependencies, resolved and fetched by the image's own cargo, once per change.

The host's cargo never resolves: a host cargo newer than the image's pinned Rust can pick
crate versions that rustc cannot build, and the offline build then fails. So ``cargo
fetch`` runs in the builder image, in a container that has the network (the build
container has none), writing Cargo.lock into the workspace and the registry into
``<cache>/cargo-home``. It trusts what the host trusts (a proxy that inspects TLS has its
CA there) and is given the host's proxy variables.

A stamp in the cargo home records what the fetch saw — the image, Cargo.lock and every
manifest the build reads — so an unchanged crate is not fetched again (no container, no
network). Removing the cargo home removes the stamps with it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import ssl
from collections.abc import Callable, Sequence
from pathlib import Path

from tasks.atomic import read_stamp, write_atomic
from tasks.backends.sources import Sources
from tasks.builder.transport import Bind, Mount
from tasks.errors import CargoError
from tasks.store import digest_of

STAMPS = ".compatbuild-fetched"
CA_INSIDE = "/etc/compatbuild-host-ca.crt"
_PROXY_VARS = ("http_proxy", "https_proxy", "no_proxy", "all_proxy")
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
# a failed link's cause, as zig's lld, GNU ld and lld word it
_LINK_CAUSE = re.compile(r"unable to find|cannot find -l|undefined symbol:|undefined reference to")
Log = Callable[[str], None]


def fetch_material(image: str, sources: Sources, daemon: str = "") -> dict[str, object]:
    """What a fetch depends on: the image (its cargo) and the bytes of Cargo.lock and the manifests,
    and for a remote daemon which one (the registry is in that daemon's cargo-home volume)."""
    files = [*sources.manifests, sources.workspace / "Cargo.lock"]
    digests = {}
    for f in sorted(set(files)):
        try:
            digests[str(f)] = hashlib.sha256(f.read_bytes()).hexdigest()
        except FileNotFoundError:
            digests[str(f)] = ""
    material: dict[str, object] = {"image": image, "files": digests}
    if daemon:
        material["daemon"] = daemon
    return material


def stamp_path(home: Path, image: str, sources: Sources) -> Path:
    """The fetch stamp of one workspace for one image, inside the cargo home."""
    key = digest_of([str(sources.workspace), image])[:32]
    return home / STAMPS / f"{key}.json"


def ensure_fetched(tp: Bind, image: str, name: str, sources: Sources, home: Path, *,
                   mounts: Sequence[Mount], workdir: str, user: str, on_line: Log) -> bool:
    """Run ``cargo fetch`` in ``image`` unless the stamp says nothing changed; True when it ran.

    Through a remote daemon's transport the Cargo.lock it writes is brought back.
    """
    stamp = stamp_path(home, image, sources)
    daemon = tp.key()
    if read_stamp(stamp.parent, stamp.name) == fetch_material(image, sources, daemon):
        return False
    env = {"CARGO_TERM_COLOR": "never"}
    env.update({k: v for k, v in os.environ.items() if k.lower() in _PROXY_VARS})
    all_mounts = list(mounts)
    ca = host_ca_bundle()
    if ca is not None:
        all_mounts.append(Mount(ca, CA_INSIDE))
        env["CARGO_HTTP_CAINFO"] = CA_INSIDE
    lock_file = sources.workspace / "Cargo.lock"
    status, _, stderr = tp.run_split(image, ["cargo", "fetch"], all_mounts,
                                     bring_back=lambda _: [(str(lock_file), lock_file)],
                                     on_stderr=on_line, user=user, working_dir=workdir, environment=env)
    if status != 0:
        raise CargoError(f"cargo fetch for {name} failed: {cargo_error(stderr, status)}")
    material = fetch_material(image, sources, daemon)  # after: the fetch may have written Cargo.lock
    write_atomic(stamp, (json.dumps(material, sort_keys=True) + "\n").encode())
    return True


def host_ca_bundle() -> Path | None:
    """The host's CA bundle file, if it has one where OpenSSL or the env says."""
    candidates = [os.environ.get("CARGO_HTTP_CAINFO"), os.environ.get("SSL_CERT_FILE"),
                  ssl.get_default_verify_paths().cafile, "/etc/ssl/certs/ca-certificates.crt",
                  "/etc/pki/tls/certs/ca-bundle.crt"]
    for c in candidates:
        if c and Path(c).is_file():
            return Path(c).resolve()
    return None


_FRAME = re.compile(r"^(\d+: |at )")  # a line of anyhow's "Stack backtrace:" (RUST_BACKTRACE=1)


def _without_backtraces(lines: list[str]) -> list[str]:
    """``lines`` without anyhow's backtraces, whose last frame ("13: <unknown>") says nothing."""
    kept: list[str] = []
    tracing = False
    for line in lines:
        if line == "Stack backtrace:":
            tracing = True
        elif not (tracing and (not line or _FRAME.match(line))):
            tracing = False
            kept.append(line)
    return kept


def cargo_error(stderr: str, status: int) -> str:
    """cargo's first error line, its root cause and its summary line, as one line."""
    lines = _without_backtraces([_ANSI.sub("", ln).strip() for ln in stderr.splitlines()])
    errors = [ln for ln in lines if ln.startswith(("error", "Error:"))]  # Error: anyhow's (cargo-zigbuild)
    if not errors:
        tail = [ln for ln in lines if ln]
        return tail[-1] if tail else f"exit status {status}"
    first, last = errors[0], errors[-1]
    extra = []
    if first.startswith("error: linking with"):  # the linker's own words are in its notes
        cause = next((ln.removeprefix("note: ").strip() for ln in lines if _LINK_CAUSE.search(ln)), "")
        if cause:
            extra.append(f"cause: {cause}")
    if "Caused by:" in lines:  # cargo's chain of causes: the last one is the root
        after = lines[len(lines) - lines[::-1].index("Caused by:"):]
        cause = next((ln for ln in after if ln), "")
        if cause:
            extra.append(f"caused by: {cause}")
    if last != first:
        extra.append(last)
    return f"{first} ({'; '.join(extra)})" if extra else first
