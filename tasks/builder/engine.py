"""The local Docker daemon's API over its unix socket, with the standard library only.

For the few calls a run makes before it has loaded the Docker SDK (whose import, with
requests and urllib3, costs ~50 ms, more than the call): a replayed run's image lookup
(:mod:`tasks.memo`) and a build's head start, one ``docker exec`` into the warm container
that is already running (:mod:`tasks.backends.headstart`). Everything else, and every
daemon that is not this machine's socket, goes through :mod:`tasks.builder.docker_client`.

Each call is one request on its own connection and is bounded: the connection and
every read by a deadline (:data:`TIMEOUT` for a lookup; an exec's output stream by
:data:`STREAM_TIMEOUT` per read, as the SDK's client is). Nothing here raises for a daemon
that is absent, slow or says no: the answer is None, and the caller goes the whole way.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from queue import SimpleQueue
from typing import NamedTuple
from urllib.parse import quote

TIMEOUT = 2.0  # seconds: a lookup the local daemon does not answer in 2 s is a miss
STREAM_TIMEOUT = 600.0  # seconds one read of an exec's output may wait (the SDK client's API timeout)


def local_socket() -> str | None:
    """The path of the daemon's unix socket, when DOCKER_HOST names one (or is unset); else None.

    A ``DOCKER_CONTEXT`` may point anywhere: not asked here either.
    """
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if not host.startswith("unix://") or os.environ.get("DOCKER_CONTEXT"):
        return None
    return host[len("unix://"):]


def _send(method: str, path: str, body: object, *, upgrade: bool = False) -> socket.socket | None:
    where = local_socket()
    if where is None:
        return None
    data = json.dumps(body).encode() if body is not None else b""
    # HTTP/1.0: the answer comes whole, not chunked, and the daemon closes after it; an exec's
    # output stream is a connection upgraded to the raw stream, which takes HTTP/1.1
    head = (f"{method} {path} HTTP/1.{1 if upgrade else 0}\r\nHost: docker\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\n")
    head += "Connection: Upgrade\r\nUpgrade: tcp\r\n" if upgrade else ""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(TIMEOUT)
        sock.connect(where)
        sock.sendall(head.encode() + b"\r\n" + data)
    except OSError:
        sock.close()
        return None
    return sock


def _head(sock: socket.socket, deadline: float) -> tuple[int, bytes]:
    """The status of the response on ``sock`` and what was read past its headers."""
    data = b""
    while b"\r\n\r\n" not in data:
        if time.monotonic() > deadline or not (chunk := sock.recv(65536)):
            raise OSError("no whole answer")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), rest


def call(method: str, path: str, body: object = None) -> tuple[int, object] | None:
    """One request answered with JSON: (status, the decoded body), or None (no daemon, no answer)."""
    sock = _send(method, path, body)
    if sock is None:
        return None
    deadline = time.monotonic() + TIMEOUT
    try:
        with sock:
            status, data = _head(sock, deadline)
            while chunk := sock.recv(65536):
                data += chunk
                if time.monotonic() > deadline:
                    return None
        return status, json.loads(data) if data.strip() else None
    except (OSError, ValueError, IndexError):
        return None


def image_id(tag: str) -> str | None:
    """The id of image ``tag`` on the local daemon, or None (no such image, a remote daemon, no answer)."""
    answer = call("GET", f"/images/{quote(tag, safe='')}/json")
    found = answer[1].get("Id") if answer and answer[0] == 200 and isinstance(answer[1], dict) else None
    return found if isinstance(found, str) else None


class Exec(NamedTuple):
    """One ``docker exec``: the running container it goes into, by name, and what it runs there."""

    container: str
    command: tuple[str, ...]
    user: str
    working_dir: str
    environment: tuple[tuple[str, str], ...]  # sorted (name, value)

    @staticmethod
    def of(container: str, command: Sequence[str], *, user: str, working_dir: str,
           environment: Mapping[str, str] | None) -> Exec:
        return Exec(container, tuple(command), user, working_dir, tuple(sorted((environment or {}).items())))


class Started:
    """A command started in a warm container, its output read by a thread and held until
    :meth:`chunks` is asked: by ``docker exec`` (:class:`ExecStarted`) or by the container's
    resident runner (:class:`tasks.builder.runner.RunnerStarted`).

    stdout is kept whole (cargo's JSON messages); stderr comes as the chunks it was read in.
    """

    def __init__(self, spec: Exec) -> None:
        self.spec = spec
        self.stdout: list[bytes] = []
        self.whole = False  # the output ended cleanly: all of it read
        self._stderr: SimpleQueue[bytes | None] = SimpleQueue()
        self._reader: threading.Thread | None = None

    def _start_reading(self, read: Callable[[], None]) -> None:
        """Run ``read`` (it fills ``stdout`` and the stderr queue, and ends the queue) in a thread."""
        self._reader = threading.Thread(target=read, daemon=True)
        self._reader.start()

    def chunks(self) -> Iterator[bytes]:
        """stderr as it comes, from the start (what came before this was asked, first), to the output's end."""
        while (chunk := self._stderr.get()) is not None:
            yield chunk

    def exit_code(self) -> int | None:
        """The command's exit status once its output has ended whole; None when it is not known."""
        raise NotImplementedError


class ExecStarted(Started):
    """An exec started on the daemon (its multiplexed stream on ``sock``)."""

    def __init__(self, spec: Exec, exec_id: str, sock: socket.socket, first: bytes) -> None:
        super().__init__(spec)
        self.exec_id = exec_id
        self._start_reading(lambda: self._read(sock, first))

    def _read(self, sock: socket.socket, data: bytes) -> None:
        try:
            with sock:
                sock.settimeout(STREAM_TIMEOUT)
                while True:
                    while len(data) >= 8:
                        kind, size = data[0], struct.unpack(">I", data[4:8])[0]
                        if len(data) < 8 + size:
                            break
                        frame, data = data[8:8 + size], data[8 + size:]
                        if kind == 1:
                            self.stdout.append(frame)
                        elif kind == 2:
                            self._stderr.put(frame)
                    if not (chunk := sock.recv(65536)):
                        self.whole = not data
                        return
                    data += chunk
        except OSError:
            return
        finally:
            self._stderr.put(None)

    def exit_code(self) -> int | None:
        """The exec's exit status once its stream has ended whole; None when it is not known."""
        if self._reader is not None:
            self._reader.join()
        answer = call("GET", f"/exec/{self.exec_id}/json") if self.whole else None
        code = answer[1].get("ExitCode") if answer and answer[0] == 200 and isinstance(answer[1], dict) else None
        return code if isinstance(code, int) else None


def start_exec(spec: Exec) -> ExecStarted | None:
    """``spec`` started in its container (which must be running), or None (no such container, no daemon)."""
    made = call("POST", f"/containers/{quote(spec.container, safe='')}/exec", {
        "AttachStdout": True, "AttachStderr": True, "Cmd": list(spec.command), "User": spec.user,
        "WorkingDir": spec.working_dir, "Env": [f"{k}={v}" for k, v in spec.environment]})
    exec_id = made[1].get("Id") if made and made[0] == 201 and isinstance(made[1], dict) else None
    if not isinstance(exec_id, str):
        return None
    sock = _send("POST", f"/exec/{exec_id}/start", {"Detach": False, "Tty": False}, upgrade=True)
    if sock is None:
        return None
    try:
        status, rest = _head(sock, time.monotonic() + TIMEOUT)
    except (OSError, ValueError, IndexError):
        sock.close()
        return None
    if status not in (101, 200):
        sock.close()
        return None
    return ExecStarted(spec, exec_id, sock, rest)
