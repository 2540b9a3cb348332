"""The one place that talks to Docker: a thin wrapper over ``docker.from_env()``.

It exposes only what compatbuild uses: image lookup/tag/pull/list/remove, a streaming
classic build (``api.build(decode=True)``) and a container run that always removes itself.
Every Docker failure becomes a DockerError with one line of text.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import docker.client
import docker.errors
from docker.models.containers import Container
from docker.models.images import Image

from tasks.errors import DockerError, StageBuildError

LABEL_PREFIX = "org.compatbuild"


class Docker:
    """A connected Docker client; construct with :func:`connect`."""

    def __init__(self, client: docker.client.DockerClient) -> None:
        self.client = client

    def image(self, ref: str) -> Image | None:
        """The image with this tag or id, or None."""
        try:
            return self.client.images.get(ref)
        except docker.errors.ImageNotFound:
            return None
        except docker.errors.APIError as exc:
            raise DockerError(f"docker: cannot inspect {ref}: {_why(exc)}") from None

    def tag(self, image_id: str, ref: str) -> None:
        repo, _, tag = ref.rpartition(":")
        try:
            self.client.api.tag(image_id, repo, tag)
        except docker.errors.APIError as exc:
            raise DockerError(f"docker: cannot tag {image_id} as {ref}: {_why(exc)}") from None

    def pull(self, ref: str) -> Image:
        try:
            return self.client.images.pull(ref)
        except docker.errors.APIError as exc:
            raise DockerError(f"docker: cannot pull {ref}: {_why(exc)}") from None

    def import_image(self, rootfs_tar: Path, ref: str, *, changes: Sequence[str] = ()) -> str:
        """``docker import``: make image ``ref`` from a root filesystem tarball; return its id.

        ``changes`` are Dockerfile instructions applied to it (``ENV``, ``CMD``, ``LABEL``).
        """
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
        try:
            return list(self.client.images.list(filters={"label": label}))
        except docker.errors.APIError as exc:
            raise DockerError(f"docker: cannot list images: {_why(exc)}") from None

    def remove_image(self, ref: str) -> None:
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
    ) -> Iterator[Container]:
        """Create and start a container that is always removed on exit."""
        try:
            c = self.client.containers.run(
                image,
                list(command),
                user=user,
                volumes={k: dict(v) for k, v in (volumes or {}).items()},
                environment=dict(environment or {}),
                working_dir=working_dir,
                network_disabled=network_disabled,
                detach=True,
            )
        except docker.errors.ImageNotFound:
            raise DockerError(f"docker: image {image} not found") from None
        except docker.errors.APIError as exc:
            raise DockerError(f"docker: cannot start a container of {image}: {_why(exc)}") from None
        try:
            yield c
        finally:
            try:
                c.remove(force=True)
            except docker.errors.APIError:
                pass

    def run(
        self,
        image: str,
        command: Sequence[str],
        *,
        on_line: Callable[[str], None] | None = None,
        **kwargs: Any,
    ) -> tuple[int, str]:
        """Run to completion, streaming output lines; return (exit status, all output)."""
        out: list[str] = []
        with self.container(image, command, **kwargs) as c:
            buf = b""
            for data in c.logs(stream=True, follow=True):
                buf += data
                *lines, buf_s = buf.split(b"\n")
                buf = buf_s
                for raw in lines:
                    line = raw.decode(errors="replace")
                    out.append(line)
                    if on_line:
                        on_line(line)
            if buf:
                line = buf.decode(errors="replace")
                out.append(line)
                if on_line:
                    on_line(line)
            status = c.wait().get("StatusCode", 1)
        return int(status), "\n".join(out)

    def run_split(
        self,
        image: str,
        command: Sequence[str],
        *,
        on_stderr: Callable[[str], None] | None = None,
        **kwargs: Any,
    ) -> tuple[int, str, str]:
        """Run to completion streaming stderr lines live; return (status, stdout, stderr).

        For tools that write machine-readable output to stdout and human output to stderr
        (``cargo --message-format=json-render-diagnostics``). stdout is read once the
        container has exited.
        """
        err: list[str] = []
        with self.container(image, command, **kwargs) as c:
            try:
                buf = b""
                for data in c.logs(stream=True, follow=True, stdout=False, stderr=True):
                    buf += data
                    *lines, buf = buf.split(b"\n")
                    for raw in lines:
                        err.append(raw.decode(errors="replace"))
                        if on_stderr:
                            on_stderr(err[-1])
                if buf:
                    err.append(buf.decode(errors="replace"))
                    if on_stderr:
                        on_stderr(err[-1])
                status = c.wait().get("StatusCode", 1)
                out = c.logs(stdout=True, stderr=False).decode(errors="replace")
            except docker.errors.APIError as exc:
                raise DockerError(f"docker: running {image}: {_why(exc)}") from None
        return int(status), out, "\n".join(err)


def _why(exc: docker.errors.APIError) -> str:
    return str(getattr(exc, "explanation", None) or exc).strip().splitlines()[0]


def connect() -> Docker:
    """Connect to the daemon named by DOCKER_HOST (or the default socket) and ping it."""
    try:
        client = docker.client.from_env(timeout=600)
        client.ping()
    except docker.errors.DockerException as exc:
        host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DockerError(
            f"cannot reach the Docker daemon at {host} (is it running?): {reason}; "
            "`invoke build --backend zig` builds without Docker (and `invoke smoke --matrix` loads)"
        ) from None
    return Docker(client)
