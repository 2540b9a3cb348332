"""Build a crate's cdylibs in the builder image, as the calling user, and copy them out.

    crate ──► inspect ──► builder image (built if missing) ──► cargo fetch (network)
          ──► cargo build --offline in the image (no network) ──► out/lib*.so + last-build.json

Mounts: the crate's workspace at /src (read-write: cargo may write Cargo.lock),
``<cache>/cargo-home`` at /cargo (the registry persists between builds) and
``<cache>/targets/<hash of the crate path>`` at /target (incremental rebuilds). Registry
dependencies are fetched where the network is: by the host's cargo into the same
cargo-home when one exists, else by the image's cargo in a container with network.
cargo's human output (stderr) streams live; its JSON messages (stdout) name the artifacts.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import ssl
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

from tasks import pipeline
from tasks.atomic import copy_atomic, write_atomic
from tasks.crates.crate import ADD_CDYLIB, CrateInfo, inspect_crate
from tasks.errors import CargoError, CrateError, OutputError
from tasks.image.docker_client import Docker
from tasks.inputs.lockfile import Lockfile
from tasks.settings import Settings
from tasks.store import Store

RECORD = "last-build.json"
_PROXY_VARS = ("http_proxy", "https_proxy", "no_proxy", "all_proxy")
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
Log = Callable[[str], None]


@dataclass(frozen=True)
class BuildResult:
    """What a build produced: the copied libraries, where, and with which image."""

    libraries: tuple[Path, ...]
    out_dir: Path
    image_tag: str
    crate: CrateInfo
    seconds: float = 0.0


@dataclass(frozen=True)
class LastBuild:
    """The record ``out/last-build.json`` keeps for `invoke smoke` and `invoke audit`."""

    libraries: tuple[Path, ...]
    crate: Path
    image_tag: str
    built_at: str


def cargo_home(settings: Settings) -> Path:
    return settings.cache / "cargo-home"


def target_dir(settings: Settings, crate: CrateInfo) -> Path:
    """A target dir per workspace path, so each crate's rebuilds are incremental."""
    key = hashlib.sha256(str(crate.workspace_root).encode()).hexdigest()[:16]
    return settings.cache / "targets" / f"{crate.workspace_root.name}-{key}"


def build_crate(
    dk: Docker,
    lock: Lockfile,
    store: Store,
    settings: Settings,
    crate: Path,
    *,
    release: bool = True,
    features: str = "",
    extra_args: Sequence[str] = (),
    out: Path | None = None,
    log: Log = print,
    on_line: Log = print,
) -> BuildResult:
    """Build ``crate``'s cdylibs in the builder image; copy them into ``out`` (settings.out)."""
    started = time.monotonic()
    info = inspect_crate(crate)
    tag = pipeline.image(dk, lock, settings, "builder", log=log, on_line=on_line)
    home, target = cargo_home(settings), target_dir(settings, info)
    for d in (home, target):
        d.mkdir(parents=True, exist_ok=True)
    workdir = str(PurePosixPath("/src") / info.root.relative_to(info.workspace_root).as_posix())
    volumes = {
        str(info.workspace_root): {"bind": "/src", "mode": "rw"},
        str(home): {"bind": "/cargo", "mode": "rw"},
        str(target): {"bind": "/target", "mode": "rw"},
    }
    user = f"{os.getuid()}:{os.getgid()}"

    _fetch(dk, tag, info, home, volumes, workdir, user, on_line)

    cmd = ["cargo", "build", "--offline", "--message-format=json-render-diagnostics"]
    cmd += ["--release"] if release else []
    cmd += ["--features", features] if features else []
    cmd += ["--workspace"] if info.workspace else []
    cmd += list(extra_args)
    log(f"Building {info.name} in {tag} (glibc {lock.target.glibc})")
    status, stdout, stderr = dk.run_split(
        tag, cmd, on_stderr=on_line, user=user, volumes=volumes, working_dir=workdir,
        environment={"CARGO_TERM_COLOR": "never"}, network_disabled=True,
    )
    if status != 0:
        raise CargoError(f"cargo build of {info.name} failed: {_cargo_error(stderr, status)}")
    built = _cdylibs(stdout, target)
    if not built:
        raise CrateError(f"cargo built no cdylib for {info.name}; {ADD_CDYLIB}")
    out_dir = (out or settings.out).expanduser().resolve()
    libraries = tuple(_copy_out(p, out_dir) for p in built)
    seconds = time.monotonic() - started
    record = {
        "libraries": [str(p) for p in libraries],
        "crate": str(info.root),
        "name": info.name,
        "image": tag,
        "target": {"name": lock.target.name, "glibc": lock.target.glibc},
        "release": release,
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
        "seconds": round(seconds, 1),
    }
    write_atomic(out_dir / RECORD, (json.dumps(record, indent=2) + "\n").encode())
    for p in libraries:
        log(f"Built {p}")
    return BuildResult(libraries, out_dir, tag, info, seconds)


def last_build(out: Path) -> LastBuild:
    """The libraries of the last build into ``out``; CompatError when there is none."""
    path = Path(out) / RECORD
    try:
        data = json.loads(path.read_text())
        libs = tuple(Path(p) for p in data["libraries"])
        found = LastBuild(libs, Path(data["crate"]), str(data["image"]), str(data["time"]))
    except FileNotFoundError:
        raise OutputError(f"no build recorded in {out}; run `invoke build` first") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise OutputError(f"{path}: unreadable build record ({exc}); run `invoke build`") from None
    missing = [p for p in libs if not p.is_file()]
    if missing:
        raise OutputError(f"{missing[0]} from the last build is gone; run `invoke build` again")
    return found


def _fetch(dk: Docker, tag: str, info: CrateInfo, home: Path, volumes: dict[str, dict[str, str]],
           workdir: str, user: str, on_line: Log) -> None:
    """Download registry dependencies into ``home`` where the network is."""
    cargo = shutil.which("cargo")
    if cargo:
        env = {**os.environ, "CARGO_HOME": str(home), "CARGO_TERM_COLOR": "never"}
        try:
            proc = subprocess.Popen(  # noqa: S603 - argument list, no shell
                [cargo, "fetch", "--manifest-path", str(info.manifest)], cwd=info.root, env=env,
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            )
        except OSError as exc:
            raise CargoError(f"cannot run the host's cargo fetch: {exc}") from None
        assert proc.stderr is not None
        lines = []
        for line in proc.stderr:
            lines.append(line.rstrip("\n"))
            on_line(lines[-1])
        status = proc.wait()
        stderr = "\n".join(lines)
    else:
        # The image's cargo, with network. It trusts what the host trusts (a proxy that
        # inspects TLS has its CA there) and is given the host's proxy variables.
        env = {"CARGO_TERM_COLOR": "never"}
        env.update({k: v for k, v in os.environ.items() if k.lower() in _PROXY_VARS})
        mounts = dict(volumes)
        ca = _host_ca_bundle()
        if ca is not None:
            mounts[str(ca)] = {"bind": "/etc/compatbuild-host-ca.crt", "mode": "ro"}
            env["CARGO_HTTP_CAINFO"] = "/etc/compatbuild-host-ca.crt"
        status, _, stderr = dk.run_split(
            tag, ["cargo", "fetch"], on_stderr=on_line, user=user, volumes=mounts,
            working_dir=workdir, environment=env,
        )
    if status != 0:
        raise CargoError(f"cargo fetch for {info.name} failed: {_cargo_error(stderr, status)}")


def _host_ca_bundle() -> Path | None:
    """The host's CA bundle file, if it has one where OpenSSL or the env says."""
    candidates = [os.environ.get("CARGO_HTTP_CAINFO"), os.environ.get("SSL_CERT_FILE"),
                  ssl.get_default_verify_paths().cafile, "/etc/ssl/certs/ca-certificates.crt",
                  "/etc/pki/tls/certs/ca-bundle.crt"]
    for c in candidates:
        if c and Path(c).is_file():
            return Path(c).resolve()
    return None


def _cargo_error(stderr: str, status: int) -> str:
    """cargo's first error line, its root cause and its summary line, as one line."""
    lines = [_ANSI.sub("", ln).strip() for ln in stderr.splitlines()]
    errors = [ln for ln in lines if ln.startswith("error")]
    if not errors:
        tail = [ln for ln in lines if ln]
        return tail[-1] if tail else f"exit status {status}"
    first, last = errors[0], errors[-1]
    extra = []
    if "Caused by:" in lines:  # cargo's chain of causes: the last one is the root
        after = lines[len(lines) - lines[::-1].index("Caused by:"):]
        cause = next((ln for ln in after if ln), "")
        if cause:
            extra.append(f"caused by: {cause}")
    if last != first:
        extra.append(last)
    return f"{first} ({'; '.join(extra)})" if extra else first


def _cdylibs(stdout: str, target: Path) -> list[Path]:
    """Host paths of the cdylib .so files named by cargo's compiler-artifact messages."""
    found: list[Path] = []
    for line in stdout.splitlines():
        if not line.startswith("{"):
            continue
        try:
            msg = json.loads(line)
        except ValueError:
            continue
        if msg.get("reason") != "compiler-artifact":
            continue
        kinds = msg.get("target", {}).get("crate_types") or msg.get("target", {}).get("kind", [])
        if "cdylib" not in kinds:
            continue
        for name in msg.get("filenames", []):
            inside = PurePosixPath(name)
            if inside.suffix == ".so" and inside.is_relative_to("/target"):
                host = target / inside.relative_to("/target")
                if host not in found:
                    found.append(host)
    return found


def _copy_out(lib: Path, out_dir: Path) -> Path:
    """Copy a built library into ``out_dir`` through the atomic-output primitive."""
    try:
        return copy_atomic(lib, out_dir / lib.name, mode=0o755)
    except OSError as exc:
        raise OutputError(f"cannot copy {lib.name} to {out_dir}: {exc.strerror or exc}") from None
