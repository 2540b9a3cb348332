"""The one place that talks to Docker: a thin wrapper over ``docker.from_env()``.

It exposes only what compatbuild uses: image lookup/tag/pull/push/list/remove, a streaming
classic build (``api.build(decode=True)``) and a container run that always removes itself
(with files put in before it starts and fetched out after it exits, for a daemon that
cannot see this machine's files). Every Docker failure becomes a DockerError with one line
of text. The daemon is the one DOCKER_HOST names (``unix://``, ``tcp://`` with
DOCKER_TLS_VERIFY/DOCKER_CERT_PATH, ``ssh://``), as docker-py reads it; registry
credentials are docker-py's own (``~/.docker/config.json`` and its credential helpers),
never passed or printed here.

It is longer than the other modules (~430 lines) on purpose: it is the *one* module that
holds docker-py calls, so each call's error mapping lives beside it; splitting it would
make a second place that talks to Docker.
"""

from __future__ import annotations

import io
import os
import tarfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from tasks.atomic import pid_alive
from tasks.builder import runner
from tasks.builder.engine import Exec, Started
from tasks.errors import DockerError, RegistryError, StageBuildError, redact
from tasks.store import digest_of

if TYPE_CHECKING:  # docker is imported where it is used, so importing this module stays cheap
    import docker.client
    import docker.errors
    from docker.models.containers import Container
    from docker.models.images import Image

LABEL_PREFIX = "org.compatbuild"
_HOST = os.uname().nodename


def _owner_labels() -> dict[str, str]:
    """Labels naming the process that owns a container, so a later run can tell an orphan."""
    return {f"{LABEL_PREFIX}.project": "compatbuild", f"{LABEL_PREFIX}.host": _HOST,
            f"{LABEL_PREFIX}.pid": str(os.getpid())}


LOCAL_SCHEMES = ("http+docker://localhost", "http+docker://localunixsocket", "http+docker://localnpipe")
Archive = tuple[str, bytes]  # (folder inside the container, a tar of what goes there)
if TYPE_CHECKING:  # an annotation only: Container is not imported at run time
    Collect = Callable[[Container], None]


class Docker:
    """A connected Docker client; construct with :func:`connect`."""

    def __init__(self, client: docker.client.DockerClient) -> None:
        self.client = client

    def image(self, ref: str) -> Image | None:
        """The image with this tag or id, or None."""
        import docker.errors

        try:
            return self.client.images.get(ref)
        except docker.errors.ImageNotFound:
            return None
        except docker.errors.APIError as exc:
            raise DockerError(f"docker: cannot inspect {ref}: {_why(exc)}") from None

    def tag(self, image_id: str, ref: str) -> None:
        import docker.errors

        repo, _, tag = ref.rpartition(":")
        try:
            self.client.api.tag(image_id, repo, tag)
        except docker.errors.APIError as exc:
            raise DockerError(f"docker: cannot tag {image_id} as {ref}: {_why(exc)}") from None

    def pull(self, ref: str) -> Image:
        import docker.errors

        try:
            return self.client.images.pull(ref)
        except docker.errors.APIError as exc:
            raise DockerError(f"docker: cannot pull {ref}: {_why(exc)}") from None

    @property
    def remote(self) -> bool:
        """True when the daemon is reached over the network (tcp://, ssh://): it cannot see our files."""
        return not str(self.client.api.base_url).startswith(LOCAL_SCHEMES)

    def daemon_id(self) -> str:
        """The daemon's own ID (``docker info``), to key what lives on one daemon."""
        import docker.errors

        try:
            return str(self.client.info().get("ID") or self.client.api.base_url)
        except docker.errors.APIError as exc:
            raise DockerError(f"docker: cannot read the daemon's info: {_why(exc)}") from None

    def pull_ref(self, ref: str) -> Image | None:
        """Pull ``ref`` (``repo:tag`` or ``repo@sha256:...``) from its registry; None when it has no such image.

        Credentials come from docker-py's own lookup (config.json, credential helpers).
        Any other failure (unreachable registry, refused credentials) is a RegistryError.
        """
        import docker.errors

        repo, tag = _split_ref(ref)
        try:
            for chunk in self.client.api.pull(repo, tag=tag, stream=True, decode=True):
                if isinstance(chunk, dict) and "error" in chunk:
                    why = str(chunk["error"])
                    if _not_found(why):
                        return None
                    raise RegistryError(f"cannot pull {ref}: {redact(why.strip().splitlines()[0])}")
        except docker.errors.NotFound:
            return None
        except docker.errors.APIError as exc:
            if _not_found(_why(exc)):
                return None
            raise RegistryError(f"cannot pull {ref}: {redact(_why(exc))}") from None
        return self.image(ref)

    def push(self, ref: str, *, on_line: Callable[[str], None] | None = None) -> str:
        """Push the local image ``ref`` (``repo:tag``) to its registry; return the manifest digest."""
        import docker.errors

        repo, tag = _split_ref(ref)
        digest = ""
        try:
            for chunk in self.client.api.push(repo, tag=tag, stream=True, decode=True):
                if not isinstance(chunk, dict):
                    continue
                if "error" in chunk:
                    why = redact(str(chunk["error"]).strip().splitlines()[0])
                    raise RegistryError(f"cannot push {ref}: {why}")
                aux = chunk.get("aux")
                if isinstance(aux, dict) and aux.get("Digest"):
                    digest = str(aux["Digest"])
                if on_line and chunk.get("status") and not chunk.get("progressDetail"):
                    on_line(f"{chunk.get('id', '')} {chunk['status']}".strip())
        except docker.errors.APIError as exc:
            raise RegistryError(f"cannot push {ref}: {redact(_why(exc))}") from None
        if not digest:
            raise RegistryError(f"pushing {ref} reported no manifest digest")
        return digest

    def repo_digest(self, ref: str, repo: str) -> str | None:
        """The registry manifest digest (``sha256:...``) this daemon recorded for ``ref`` in ``repo``."""
        image = self.image(ref)
        for entry in (image.attrs.get("RepoDigests") or []) if image is not None else []:
            name, _, digest = str(entry).partition("@")
            if name == repo:
                return digest
        return None

    def ensure_volume(self, name: str, labels: Mapping[str, str]) -> bool:
        """Create the named volume unless it exists; True when it was created now."""
        import docker.errors

        try:
            self.client.volumes.get(name)
            return False
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as exc:
            raise DockerError(f"docker: cannot inspect volume {name}: {_why(exc)}") from None
        try:
            self.client.volumes.create(name=name, labels=dict(labels))
        except docker.errors.APIError as exc:
            raise DockerError(f"docker: cannot create volume {name}: {_why(exc)}") from None
        return True

    def import_image(self, rootfs_tar: Path, ref: str, *, changes: Sequence[str] = ()) -> str:
        """``docker import``: make image ``ref`` from a root filesystem tarball; return its id.

        ``changes`` are Dockerfile instructions applied to it (``ENV``, ``CMD``, ``LABEL``).
        """
        import docker.errors

        repo, _, tag = ref.rpartition(":")
        if not repo or "/" in tag:
            repo, tag = ref, "latest"
        try:
            self.client.api.import_image(src=str(rootfs_tar), repository=repo, tag=tag, changes=list(changes))
        except docker.errors.APIError as exc:
            raise DockerError(f"docker: cannot import {rootfs_tar} as {ref}: {_why(exc)}") from None
        except docker.errors.DockerException as exc:
            raise DockerError(f"docker: cannot import {rootfs_tar} as {ref}: {exc}") from None
        image = self.image(ref)
        if image is None:
            raise DockerError(f"docker: importing {rootfs_tar} reported success but {ref} does not exist")
        return str(image.id)

    def images(self, label: str) -> list[Image]:
        import docker.errors

        try:
            return list(self.client.images.list(filters={"label": label}))
        except docker.errors.APIError as exc:
            raise DockerError(f"docker: cannot list images: {_why(exc)}") from None

    def remove_image(self, ref: str) -> None:
        import docker.errors

        try:
            self.client.images.remove(ref, noprune=False)
        except docker.errors.ImageNotFound:
            pass
        except docker.errors.APIError as exc:
            raise DockerError(f"docker: cannot remove {ref}: {_why(exc)}") from None

    def build(
        self,
        context: IO[bytes],
        *,
        tag: str,
        buildargs: Mapping[str, str],
        labels: Mapping[str, str],
        on_line: Callable[[str], None],
        what: str,
        nocache: bool = False,
    ) -> str:
        """Build a classic-builder context tar, streaming each log line to ``on_line``.

        Returns the image id. On an ``error`` chunk raises StageBuildError with the end of
        the log, so the user sees why without scrolling.
        """
        import docker.errors

        tail: list[str] = []

        def emit(text: str) -> None:
            for line in text.splitlines():
                tail.append(line)
                del tail[:-25]
                on_line(line)

        image_id = ""
        try:
            stream: Iterator[dict[str, Any]] = self.client.api.build(
                fileobj=context,
                custom_context=True,
                tag=tag,
                buildargs=dict(buildargs),
                labels=dict(labels),
                rm=True,
                forcerm=True,
                nocache=nocache,
                decode=True,
            )
            for chunk in stream:
                if "stream" in chunk:
                    emit(str(chunk["stream"]))
                if "aux" in chunk and isinstance(chunk["aux"], dict):
                    image_id = str(chunk["aux"].get("ID", image_id))
                if "error" in chunk:
                    emit(str(chunk["error"]))
                    last = "\n".join("    " + t for t in tail[-15:])
                    raise StageBuildError(
                        f"{what} failed: {str(chunk['error']).strip()}\n  end of its log:\n{last}"
                    )
        except docker.errors.APIError as exc:
            raise StageBuildError(f"{what} failed: {_why(exc)}") from None
        except docker.errors.DockerException as exc:
            raise DockerError(f"docker: {what}: {exc}") from None
        image = self.image(tag)
        if image is None:
            raise StageBuildError(f"{what} finished without producing {tag}")
        return str(image.id or image_id)

    @contextmanager
    def container(
        self,
        image: str,
        command: Sequence[str],
        *,
        user: str | None = None,
        volumes: Mapping[str, Mapping[str, str]] | None = None,
        environment: Mapping[str, str] | None = None,
        working_dir: str | None = None,
        network_disabled: bool = False,
        archives: Sequence[Archive] = (),
    ) -> Iterator[Container]:
        """Create and start a container that is always removed on exit.

        ``archives`` are (folder, tar bytes) unpacked into the container before it starts
        (``put_archive``): how files reach a daemon that cannot see this machine's.
        """
        import docker.errors

        c: Container | None = None
        self.remove_orphans()
        try:
            c = self.client.containers.create(
                image,
                list(command),
                user=user,
                volumes={k: dict(v) for k, v in (volumes or {}).items()},
                environment=dict(environment or {}),
                working_dir=working_dir,
                network_disabled=network_disabled,
                labels=_owner_labels(),
            )
            for folder, data in archives:
                if not c.put_archive(folder, data):
                    raise DockerError(f"docker: cannot copy files into {folder} of a container of {image}")
            c.start()
        except docker.errors.ImageNotFound:
            _remove_container(c)
            raise DockerError(f"docker: image {image} not found") from None
        except docker.errors.APIError as exc:
            _remove_container(c)
            raise DockerError(f"docker: cannot start a container of {image}: {_why(exc)}") from None
        except BaseException:
            _remove_container(c)
            raise
        try:
            yield c
        finally:
            try:
                c.remove(force=True)
            except docker.errors.APIError:
                pass

    def remove_orphans(self) -> list[str]:
        """Remove the containers a compatbuild process on this host started and could not
        remove itself because it died (kill -9, a lost terminal): labelled with its pid,
        which is no longer running. Another live process's containers, and containers
        compatbuild did not make, are never touched. Returns the removed containers' ids."""
        import docker.errors

        removed: list[str] = []
        try:
            mine = self.client.containers.list(
                all=True, filters={"label": [f"{LABEL_PREFIX}.project=compatbuild",
                                             f"{LABEL_PREFIX}.host={_HOST}"]})
        except docker.errors.APIError:
            return removed
        for c in mine:
            if WARM_LABEL in (c.labels or {}) and c.status == "running":
                continue  # a warm container outlives its maker; it stops itself when idle
            pid = (c.labels or {}).get(f"{LABEL_PREFIX}.pid", "")
            if pid.isdigit() and not pid_alive(int(pid)):
                _remove_container(c)
                removed.append(str(c.id))
        return removed

    def run(
        self,
        image: str,
        command: Sequence[str],
        *,
        on_line: Callable[[str], None] | None = None,
        collect: Collect | None = None,
        **kwargs: Any,
    ) -> tuple[int, str]:
        """Run to completion, streaming output lines; return (exit status, all output).

        ``collect(container)`` runs after it exited, before it is removed (to fetch files out).
        """
        with self.container(image, command, **kwargs) as c:
            out = _lines(c.logs(stream=True, follow=True), on_line)
            status = c.wait().get("StatusCode", 1)
            if collect is not None:
                collect(c)
        return int(status), "\n".join(out)

    def run_split(
        self,
        image: str,
        command: Sequence[str],
        *,
        on_stderr: Callable[[str], None] | None = None,
        collect: Callable[[Container, str], None] | None = None,
        **kwargs: Any,
    ) -> tuple[int, str, str]:
        """Run to completion streaming stderr lines live; return (status, stdout, stderr).

        For tools that write machine-readable output to stdout and human output to stderr
        (``cargo --message-format=json-render-diagnostics``). stdout is read once the
        container has exited; ``collect(container, stdout)`` runs then, before it is removed.
        """
        import docker.errors

        with self.container(image, command, **kwargs) as c:
            try:
                err = _lines(c.logs(stream=True, follow=True, stdout=False, stderr=True), on_stderr)
                status = c.wait().get("StatusCode", 1)
                out = c.logs(stdout=True, stderr=False).decode(errors="replace")
                if collect is not None:
                    collect(c, out)
            except docker.errors.APIError as exc:
                raise DockerError(f"docker: running {image}: {_why(exc)}") from None
        return int(status), out, "\n".join(err)


    # ------------------------------------------------------------------------- warm containers

    def run_warm(
        self,
        image: str,
        command: Sequence[str],
        *,
        slot: str,
        idle: int,
        user: str,
        volumes: Mapping[str, Mapping[str, str]],
        working_dir: str,
        environment: Mapping[str, str] | None = None,
        network_disabled: bool = True,
        on_stderr: Callable[[str], None] | None = None,
        early: Started | None = None,
    ) -> tuple[int, str, str]:
        """``command`` in the warm container for (``image``'s id, ``volumes``, ``user``, network),
        begun by its resident runner (:mod:`tasks.builder.runner`), else by ``docker exec``;
        (status, stdout, stderr), stderr lines streamed live.

        The container is made on first use (named by that key, so concurrent runs share one)
        and stops, removing itself, after ``idle`` seconds without a command (its own watchdog,
        :data:`tasks.builder.runner.SCRIPT`). Another warm container of the same ``slot`` (crate
        workspace and target) whose key differs (a new image, other mounts) is stopped. A command
        that finds its container gone (it just idled out) starts a new one, once.

        ``early``, an exec a head start made (:mod:`tasks.backends.headstart`): when it is this
        very exec, its output is taken (what it held back first) instead of running it again;
        any other is let finish, unread, before this one runs (cargo would wait for it anyway).
        """
        found = self.image(image)
        if found is None:
            raise DockerError(f"docker: image {image} not found")
        key, spec = warm_exec(str(found.id), command, volumes=volumes, user=user, working_dir=working_dir,
                              environment=environment, network_disabled=network_disabled)
        for attempt in (1, 2):
            c = self._warm(image, key=key, name=spec.container, slot=slot, idle=idle, user=user,
                           volumes=volumes, network_disabled=network_disabled)
            try:
                if early is not None:
                    started, early = early, None
                    if started.spec == spec:
                        return _finished(c, started, on_stderr)
                    for _ in started.chunks():
                        pass  # another command than this build's: it ends before ours starts
                    started.exit_code()  # and is done with (a runner's request folder removed)
                target = runner.target_of(volumes)
                begun = runner.start(spec, target) if target is not None else None  # no exec's ~55 ms
                if begun is not None:
                    return _finished(c, begun, on_stderr)
                return self._exec_split(c, spec, on_stderr=on_stderr)
            except _Gone:
                if attempt == 2:
                    raise DockerError(f"docker: the warm container of {image} stopped twice during a run; "
                                      "build with --no-warm") from None
        raise AssertionError("unreachable")

    def _warm(self, image: str, *, key: str, name: str, slot: str, idle: int, user: str,
              volumes: Mapping[str, Mapping[str, str]], network_disabled: bool) -> Container:
        """The running warm container named by ``key``: found, or made and started.

        Concurrent runs race for one name: a container another live run has just created is
        waited for while it starts (about 10 s at most), never removed; one whose maker died
        before starting it, or that is exiting, is removed and made again.
        """
        import docker.errors

        try:
            # sparse: the listing's own fields, no inspect per container (one that idles out meanwhile is a 404)
            for other in self.client.containers.list(sparse=True, filters={"label": [f"{WARM_LABEL}.slot={slot}"]}):
                if (other.attrs.get("Labels") or {}).get(WARM_LABEL) != key:
                    _remove_container(other)  # its image or mounts changed: it cannot be reused
            for _ in range(WARM_TRIES):
                try:
                    c = self.client.containers.get(name)
                except docker.errors.NotFound:
                    c = None
                if c is not None:
                    if c.status == "running":
                        return c
                    if c.status == "created" and _owner_alive(c):
                        time.sleep(0.2)  # its maker is starting it
                        continue
                    _remove_container(c)  # its maker died before starting it, or it is exiting
                    continue
                try:
                    c = self.client.containers.create(
                        image, ["sh", "-c", runner.SCRIPT, "watchdog", str(int(idle)), name], name=name, user=user,
                        volumes={k: dict(v) for k, v in volumes.items()}, network_disabled=network_disabled,
                        labels={**_owner_labels(), WARM_LABEL: key, f"{WARM_LABEL}.slot": slot},
                        auto_remove=True,
                    )
                except docker.errors.APIError as exc:
                    if exc.status_code == 409:  # another run made it first: use theirs
                        continue
                    raise
                try:
                    c.start()
                except docker.errors.NotFound:
                    continue  # removed under us (an idle stop): make it again
                except docker.errors.APIError:
                    if not _running(c):
                        raise
                return c
            raise DockerError(f"docker: the warm container {name} of {image} did not start; build with --no-warm")
        except docker.errors.ImageNotFound:
            raise DockerError(f"docker: image {image} not found") from None
        except docker.errors.APIError as exc:
            raise DockerError(f"docker: cannot start a warm container of {image}: {_why(exc)}") from None

    def _exec_split(self, c: Container, spec: Exec, *,
                    on_stderr: Callable[[str], None] | None) -> tuple[int, str, str]:
        import docker.errors

        api = self.client.api
        try:
            exec_id = api.exec_create(c.id, list(spec.command), stdout=True, stderr=True, user=spec.user,
                                      workdir=spec.working_dir, environment=dict(spec.environment))["Id"]
            out: list[bytes] = []

            def stderr_of(pairs: Iterable[tuple[bytes | None, bytes | None]]) -> Iterator[bytes]:
                for stdout, stderr in pairs:  # demux: (stdout, stderr) chunks as they come
                    if stdout:
                        out.append(stdout)
                    if stderr:
                        yield stderr

            err = _lines(stderr_of(api.exec_start(exec_id, stream=True, demux=True)), on_stderr)
            status = api.exec_inspect(exec_id).get("ExitCode")
        except docker.errors.NotFound:
            raise _Gone() from None
        except docker.errors.APIError as exc:
            if exc.status_code == 409:  # "container is not running": it idled out just now
                raise _Gone() from None
            raise DockerError(f"docker: running in a warm container: {_why(exc)}") from None
        return _exit(c, status, out, err)


def warm_exec(image_id: str, command: Sequence[str], *, volumes: Mapping[str, Mapping[str, str]], user: str,
              working_dir: str, environment: Mapping[str, str] | None, network_disabled: bool) -> tuple[str, Exec]:
    """The warm container's key for (image id, mounts, user, network), and the exec of ``command`` in it."""
    key = _warm_key(image_id, volumes, user, network_disabled)
    return key, Exec.of(f"compatbuild-warm-{key[:24]}", [*BUSY_WRAPPER, *command], user=user,
                        working_dir=working_dir, environment=environment)


def _finished(c: Container, started: Started, on_stderr: Callable[[str], None] | None) -> tuple[int, str, str]:
    """(status, stdout, stderr) of an exec a head start made, its stderr lines handed on as they come."""
    err = _lines(started.chunks(), on_stderr)
    return _exit(c, started.exit_code(), started.stdout, err)


def _exit(c: Container, status: object, out: list[bytes], err: list[str]) -> tuple[int, str, str]:
    if not isinstance(status, int) or (status == 137 and not _running(c)):
        raise _Gone()  # the container went away while the command ran (or its stream broke)
    return status, b"".join(out).decode(errors="replace"), "\n".join(err)


WARM_LABEL = f"{LABEL_PREFIX}.warm"
WARM_TRIES = 50  # lookups of the warm container while other runs make, start or remove it (~10 s)
# Its PID 1 is the resident runner and idle watchdog (tasks.builder.runner.SCRIPT). Every command
# run in it, by the runner or by docker exec, marks itself busy for the watchdog with this wrapper.
BUSY_WRAPPER = ("sh", "-c", 'm=/tmp/.compatbuild-warm-busy.$$; : > "$m"; "$@"; s=$?; '
                ': > /tmp/.compatbuild-warm-last; rm -f "$m"; exit $s', "compatbuild-exec")


def _lines(chunks: Iterable[bytes], on_line: Callable[[str], None] | None) -> list[str]:
    """The lines of a stream of byte chunks, each handed to ``on_line`` as soon as it is whole."""
    lines: list[str] = []
    buf = b""

    def emit(raw: bytes) -> None:
        lines.append(raw.decode(errors="replace"))
        if on_line:
            on_line(lines[-1])

    for data in chunks:
        buf += data
        *whole, buf = buf.split(b"\n")
        for raw in whole:
            emit(raw)
    if buf:
        emit(buf)
    return lines


class _Gone(Exception):
    """The warm container is not there (any more): make a new one."""


def _owner_alive(c: Container) -> bool:
    """Whether the compatbuild process that made ``c`` (its labels) still runs, on this host."""
    labels = c.labels or {}
    pid = labels.get(f"{LABEL_PREFIX}.pid", "")
    return labels.get(f"{LABEL_PREFIX}.host") == _HOST and pid.isdigit() and pid_alive(int(pid))


def _running(c: Container) -> bool:
    import docker.errors

    try:
        c.reload()
    except docker.errors.APIError:
        return False
    return bool(c.status == "running")


def _warm_key(image_id: str, volumes: Mapping[str, Mapping[str, str]], user: str, network_disabled: bool) -> str:
    """What a warm container is reused for: the image's id, its mounts, its user, its network, and
    the script its PID 1 runs (:data:`tasks.builder.runner.SCRIPT`: one made by other code is not reused).

    A bind mount holds the folder it was made on, not its path: a target dir removed and made
    again (a wiped cache) would leave the container writing into the deleted one. So each
    mount's device and inode are part of the key, and a new folder gets a new container.
    """
    def identity(path: str) -> list[int] | None:
        try:
            st = os.stat(path)
        except OSError:
            return None  # a named volume, or a path that is not there
        return [st.st_dev, st.st_ino]

    return digest_of({"pid1": runner.SCRIPT, "image": image_id, "user": user,
                      "volumes": {k: dict(v) for k, v in volumes.items()},
                      "network": not network_disabled, "folders": {k: identity(k) for k in volumes}})


def get_file(c: Container, path: str) -> bytes | None:
    """The bytes of one regular file in a container (``get_archive``), or None when it is not there."""
    import docker.errors

    try:
        stream, _stat = c.get_archive(path)
    except docker.errors.NotFound:
        return None
    except docker.errors.APIError as exc:
        raise DockerError(f"docker: cannot copy {path} out of a container: {_why(exc)}") from None
    with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
        for member in tar:
            if member.isfile():
                f = tar.extractfile(member)
                return f.read() if f is not None else None
    return None


def _remove_container(c: Container | None) -> None:
    import docker.errors

    if c is not None:
        try:
            c.remove(force=True)
        except docker.errors.APIError:
            pass


def _split_ref(ref: str) -> tuple[str, str]:
    """``repo:tag`` or ``repo@digest`` into (repo, tag-or-digest)."""
    if "@" in ref:
        repo, _, digest = ref.partition("@")
        return repo, digest
    repo, _, tag = ref.rpartition(":")
    if not repo or "/" in tag:
        return ref, "latest"
    return repo, tag


def _not_found(why: str) -> bool:
    low = why.lower()
    return "manifest unknown" in low or "not found" in low or "does not exist" in low


def _why(exc: docker.errors.APIError) -> str:
    return str(getattr(exc, "explanation", None) or exc).strip().splitlines()[0]


CONNECT_TIMEOUT = 15.0  # seconds for the daemon's first answer (its ping)
API_TIMEOUT = 600  # seconds any later call may wait for an answer


def connect() -> Docker:
    """Connect to the daemon named by DOCKER_HOST (or the default socket) and ping it."""
    import docker.client
    import docker.errors
    import requests.exceptions

    try:
        client = docker.client.from_env(timeout=CONNECT_TIMEOUT)  # a daemon that never answers: bounded
        client.ping()
        client.api.timeout = API_TIMEOUT  # then every call may take as long as a big image's layers do
    except (docker.errors.DockerException, requests.exceptions.RequestException, ValueError) as exc:
        # ValueError: a DOCKER_HOST urllib cannot parse; RequestException: no first answer in time
        host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if isinstance(exc, requests.exceptions.Timeout) or "timed out" in reason:  # docker-py wraps it
            reason = f"no answer within {CONNECT_TIMEOUT:g} s"
        why = "not an address" if isinstance(exc, ValueError) else "is it running?"
        raise DockerError(
            f"cannot reach the Docker daemon at {host} ({why}): {reason}; "
            "`invoke build --backend zig` builds without Docker (and `invoke smoke --matrix` loads)"
        ) from None
    return Docker(client)
