"""How a container sees this machine's files: bind mounts, or archives for a remote daemon.

The build, fetch and smoke containers say what they need as :class:`Mount` values (a host
path, where it appears inside, writable or not, and whether it is a cache that persists
between runs) and run through a transport:

- :class:`Bind` (a local daemon): each mount is a bind mount, as before.
- :class:`Archive` (a daemon that cannot see this machine: DOCKER_HOST ``tcp://`` or
  ``ssh://``, or config ``compatbuild.remote = yes``): sources go in with ``put_archive``
  before the container starts (mtimes kept, so cargo's freshness holds; cargo target dirs
  and ``.git`` left out), each cache is a named volume on the daemon
  (``compatbuild-<name>``: the cargo home, one target dir per crate and target, so rebuilds
  stay incremental), and the files a run makes are brought back with ``get_archive``.
"""

from __future__ import annotations

import io
import os
import tarfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from tasks.atomic import write_atomic
from tasks.builder.docker_client import Docker, get_file
from tasks.errors import TransportError

if TYPE_CHECKING:
    from docker.models.containers import Container

    from tasks.builder.engine import Started

SKIP_DIRS = (".git",)
VOLUME_PREFIX = "compatbuild-"
BringBack = Callable[[str], Sequence[tuple[str, Path]]]  # stdout -> (path inside, host path)


@dataclass(frozen=True)
class Mount:
    """A host file or folder a container needs at ``inside``."""

    host: Path
    inside: str
    writable: bool = False
    cache: str = ""  # a cache kept between runs; on a remote daemon the named volume compatbuild-<cache>


@dataclass(frozen=True)
class Warm:
    """Run in a warm container (``docker exec``) of this ``slot``, stopped after ``idle`` s unused."""

    slot: str
    idle: int


class Bind:
    """A local daemon: every mount is a bind mount; nothing travels."""

    remote = False

    def __init__(self, dk: Docker) -> None:
        self.dk = dk

    def key(self) -> str:
        """What a stamp of work done on the daemon must name: nothing, for a local one."""
        return ""

    def run_split(self, image: str, command: Sequence[str], mounts: Sequence[Mount], *,
                  bring_back: BringBack | None = None, warm: Warm | None = None, early: Started | None = None,
                  **kwargs: Any) -> tuple[int, str, str]:
        """``Docker.run_split`` with ``mounts``; ``bring_back`` is moot (the files are here).

        With ``warm``, by ``docker exec`` in the warm container for these mounts
        (:meth:`tasks.builder.docker_client.Docker.run_warm`, which may take ``early``, a head
        start's exec) instead of a new container.
        """
        if warm is not None:
            return self.dk.run_warm(image, command, slot=warm.slot, idle=warm.idle, volumes=binds(mounts),
                                    early=early, **kwargs)
        return self.dk.run_split(image, command, volumes=binds(mounts), **kwargs)

    def run(self, image: str, command: Sequence[str], mounts: Sequence[Mount], **kwargs: Any) -> tuple[int, str]:
        return self.dk.run(image, command, volumes=binds(mounts), **kwargs)


class Archive(Bind):
    """A remote daemon: sources in by archive, caches in named volumes, outputs back by archive."""

    remote = True

    def key(self) -> str:
        return self.dk.daemon_id()

    def run_split(self, image: str, command: Sequence[str], mounts: Sequence[Mount], *,
                  bring_back: BringBack | None = None, warm: Warm | None = None, early: Started | None = None,
                  **kwargs: Any) -> tuple[int, str, str]:
        """A one-shot container even when ``warm`` is asked: files travel in with each run (no head start)."""
        volumes, archives = self._prepare(image, mounts, kwargs.get("user"))

        def collect(c: Container, stdout: str) -> None:
            for inside, host in (bring_back(stdout) if bring_back else ()):
                _write_back(c, inside, host)

        return self.dk.run_split(image, command, volumes=volumes, archives=archives, collect=collect, **kwargs)

    def run(self, image: str, command: Sequence[str], mounts: Sequence[Mount], **kwargs: Any) -> tuple[int, str]:
        volumes, archives = self._prepare(image, mounts, kwargs.get("user"))
        return self.dk.run(image, command, volumes=volumes, archives=archives, **kwargs)

    def _prepare(self, image: str, mounts: Sequence[Mount], user: str | None
                 ) -> tuple[dict[str, dict[str, str]], list[tuple[str, bytes]]]:
        volumes: dict[str, dict[str, str]] = {}
        archives: list[tuple[str, bytes]] = []
        for m in mounts:
            if m.cache:
                name = volume_name(m.cache)
                if self.dk.ensure_volume(name, {"org.compatbuild.project": "compatbuild"}) and user:
                    self._own(image, name, user)
                volumes[name] = {"bind": m.inside, "mode": "rw" if m.writable else "ro"}
            else:
                archives.append(("/", pack(m.host, m.inside, user)))
        return volumes, archives

    def _own(self, image: str, volume: str, user: str) -> None:
        """A new volume is root's: give it to the user the containers run as."""
        status, out = self.dk.run(image, ["chown", user, "/v"], user="0:0",
                                  volumes={volume: {"bind": "/v", "mode": "rw"}}, network_disabled=True)
        if status != 0:
            raise TransportError(f"cannot prepare volume {volume} on the Docker daemon: {out.strip()[-200:]}")


def for_daemon(dk: Docker, remote: str = "auto") -> Bind:
    """The transport for ``dk``: config ``remote`` yes/no, or by the daemon's address (auto)."""
    if remote == "yes" or (remote == "auto" and dk.remote):
        return Archive(dk)
    return Bind(dk)


def volume_name(cache: str) -> str:
    """The daemon's named volume for one cache: ``compatbuild-<cache>``, in Docker's alphabet."""
    safe = "".join(ch if ch.isalnum() or ch in "_.-" else "-" for ch in cache)
    return VOLUME_PREFIX + safe


def binds(mounts: Sequence[Mount]) -> dict[str, dict[str, str]]:
    """The Docker SDK's ``volumes`` for ``mounts`` as bind mounts: host path -> where inside, and how."""
    return {str(m.host): {"bind": m.inside, "mode": "rw" if m.writable else "ro"} for m in mounts}


def pack(host: Path, inside: str, user: str | None = None) -> bytes:
    """A tar that puts ``host`` (a file or folder) at ``inside`` when unpacked at ``/``.

    Owned by ``user`` (``uid:gid``) when given; mtimes kept; cargo target dirs (they hold a
    ``CACHEDIR.TAG``) and ``.git`` left out.
    """
    uid, gid = (int(x) for x in user.split(":", 1)) if user and ":" in user else (0, 0)
    top = PurePosixPath(inside).relative_to("/").as_posix()
    buf = io.BytesIO()

    def own(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid, info.gid, info.uname, info.gname = uid, gid, "", ""
        return info

    try:
        with tarfile.open(fileobj=buf, mode="w") as tar:
            if host.is_file():
                tar.add(str(host), arcname=top, filter=own)
                return buf.getvalue()
            for here, dirs, files in os.walk(host):
                dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS
                                 and not os.path.exists(os.path.join(here, d, "CACHEDIR.TAG")))
                rel = os.path.relpath(here, host)
                arc = top if rel == "." else f"{top}/{Path(rel).as_posix()}"
                tar.add(here, arcname=arc, recursive=False, filter=own)
                for name in sorted(files):
                    tar.add(os.path.join(here, name), arcname=f"{arc}/{name}", recursive=False, filter=own)
                for d in list(dirs):
                    if os.path.islink(os.path.join(here, d)):  # a link to a folder: the link, not its tree
                        tar.add(os.path.join(here, d), arcname=f"{arc}/{d}", recursive=False, filter=own)
                        dirs.remove(d)
    except OSError as exc:
        raise TransportError(f"cannot pack {host} for the Docker daemon: {exc.strerror or exc}") from None
    return buf.getvalue()


def _write_back(c: Container, inside: str, host: Path) -> None:
    """Copy one file a container made back to ``host``; unchanged bytes leave the file alone."""
    data = get_file(c, inside)
    if data is None:
        raise TransportError(f"{inside} is not in the container; cannot bring it back to {host}")
    try:
        if host.is_file() and host.read_bytes() == data:
            return
        write_atomic(host, data, mode=0o755 if host.suffix == ".so" else None)
    except OSError as exc:
        raise TransportError(f"cannot write {host}: {exc.strerror or exc}") from None
