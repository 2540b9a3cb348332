"""The warm container's resident runner: a command started through a FIFO, not ``docker exec``.

``docker exec`` costs ~55 ms here before its command runs (runc makes a process in the
container's namespaces each time), about a third of what an edited build adds to cargo. So
the warm container's PID 1 (:data:`SCRIPT`, beside its idle watchdog) keeps a loop reading a
FIFO in the target dir it mounts, ``/target/.compatbuild-warm/<container>.wake``. A build
writes its command as a shell script into a request folder beside it (``<id>/cmd``), with a
FIFO each for stdout and stderr, opens both, and writes the folder's name to the wake FIFO;
the loop starts the script as its child (the container's user, environment and mounts, as
an exec has), which says it began (``began``) and, when the command ends, writes its exit
status (``status``) before the output closes.

Every failure is a miss, never an error: no wake FIFO or nobody reading it (the container is
gone, or was made before the runner), no ``began`` within :data:`ACK_DEADLINE`, an output
that ends without a status. :func:`start` then returns None and the caller runs ``docker
exec`` as before; a run that ends without a status is a container gone (it is tried again).
Local daemons only: the FIFOs are in a bind-mounted folder of this machine.
"""

from __future__ import annotations

import os
import select
import shlex
import shutil
import time
from collections.abc import Mapping
from pathlib import Path

from tasks.atomic import pid_alive
from tasks.builder.engine import STREAM_TIMEOUT, Exec, Started

HOME = ".compatbuild-warm"  # in the target dir: /target/.compatbuild-warm in the container
ACK_DEADLINE = 5.0  # seconds for the runner to begin a request (it begins in ms; a busy one later)
STALE = 24 * 3600.0  # seconds after which a request folder its build left (killed) is removed

# PID 1 of a warm container (``sh -c SCRIPT watchdog IDLE NAME``): the request loop in the
# background, then the idle watchdog, which exits (and --rm removes the container) after IDLE
# seconds in which no command ran. Each command marks itself busy by a file named with its pid
# (the BUSY_WRAPPER of tasks.builder.docker_client, which both ways run); a marker whose process
# is gone (killed inside) is dropped, so a crash never keeps the container alive.
SCRIPT = r"""
idle=$1; name=$2; last=/tmp/.compatbuild-warm-last; : > "$last"
home=/target/.compatbuild-warm; wake=$home/$name.wake
trap 'rm -f "$wake"; exit 0' TERM INT
if mkdir -p "$home" 2>/dev/null && { [ -p "$wake" ] || mkfifo "$wake"; } 2>/dev/null; then
  (
    exec 3<>"$wake"
    own=; command -v setsid > /dev/null 2>&1 && own=setsid  # its own process group, as an exec's
    while read -r id <&3; do
      case $id in ''|*[!0-9a-f]*) continue ;; esac
      r=$home/$id
      [ -f "$r/cmd" ] || continue
      : > "$last"
      ( $own sh -c ': > "$1/began"; sh "$1/cmd"; echo $? > "$1/status.part" && mv "$1/status.part" "$1/status"' \
          runner "$r" < /dev/null > "$r/out" 2> "$r/err" 3<&- & )  # PID 1 reaps it
    done
  ) &
fi
while sleep 1; do
  busy=0
  for m in /tmp/.compatbuild-warm-busy.*; do
    [ -e "$m" ] || continue
    if kill -0 "${m##*.}" 2>/dev/null; then busy=1; else rm -f "$m"; fi
  done
  if [ "$busy" = 1 ]; then : > "$last"; continue; fi
  now=$(date +%s); then=$(stat -c %Y "$last" 2>/dev/null || echo 0)
  [ $((now - then)) -ge "$idle" ] && { rm -f "$wake"; exit 0; }
done
"""


def command_script(spec: Exec) -> str:
    """What the runner runs for ``spec``: its folder, its environment on top of the container's, its command."""
    env = [shlex.quote(f"{k}={v}") for k, v in spec.environment]
    return (f"cd {shlex.quote(spec.working_dir)} || exit 127\n"
            f"exec env {' '.join(env)} {' '.join(shlex.quote(a) for a in spec.command)}\n")


class RunnerStarted(Started):
    """A command the resident runner began; its stdout and stderr read from the request's FIFOs."""

    def __init__(self, spec: Exec, request: Path, out: int, err: int) -> None:
        super().__init__(spec)
        self.request = request
        self._start_reading(lambda: self._read(out, err))

    def _read(self, out: int, err: int) -> None:
        fds = {out: 1, err: 2}
        poll = select.poll()
        for fd in fds:
            poll.register(fd, select.POLLIN)
        try:
            while fds:
                ready = poll.poll(STREAM_TIMEOUT * 1000)  # as an exec's stream: silent this long, broken
                if not ready:
                    raise TimeoutError
                for fd, _ in ready:
                    try:
                        data = os.read(fd, 65536)
                    except BlockingIOError:
                        continue  # woken with nothing to read after all
                    if not data:  # its writer has gone (before one came, Linux reports no hang-up)
                        poll.unregister(fd)
                        os.close(fd)
                        del fds[fd]
                    elif fds[fd] == 1:
                        self.stdout.append(data)
                    else:
                        self._stderr.put(data)
            self.whole = True
        except OSError:
            for fd in fds:
                os.close(fd)
        finally:
            self._stderr.put(None)

    def exit_code(self) -> int | None:
        """The status the runner wrote when the command ended; None when it wrote none (the container went)."""
        if self._reader is not None:
            self._reader.join()
        try:
            text = (self.request / "status").read_text().strip() if self.whole else ""
        except OSError:
            text = ""
        finally:
            shutil.rmtree(self.request, ignore_errors=True)
        return int(text) if text.isdigit() else None


def start(spec: Exec, target: Path) -> RunnerStarted | None:
    """``spec`` begun by the runner of its container, which mounts ``target`` at /target; None when
    that runner is not listening or does not begin it in time (run ``docker exec`` instead)."""
    home = target / HOME
    wake_path = home / f"{spec.container}.wake"
    try:
        wake = os.open(wake_path, os.O_WRONLY | os.O_NONBLOCK)  # ENXIO: no reader
    except OSError:
        return None
    request = home / os.urandom(16).hex()
    fds: list[int] = []
    try:
        _sweep(home)
        request.mkdir()
        (request / "owner").write_text(f"{os.getpid()}\n")  # a folder its build left (killed) is swept
        (request / "cmd").write_text(command_script(spec), encoding="utf-8", errors="surrogateescape")
        for name in ("out", "err"):
            os.mkfifo(request / name, 0o600)
            fds.append(os.open(request / name, os.O_RDONLY | os.O_NONBLOCK))  # before the runner opens them
        os.write(wake, f"{request.name}\n".encode())  # one line, under PIPE_BUF: never interleaved
        deadline = time.monotonic() + ACK_DEADLINE
        while not (request / "began").exists():
            if time.monotonic() > deadline or not wake_path.exists():
                raise TimeoutError  # not begun in time, or its container is stopping (PID 1 removed the FIFO)
            time.sleep(0.002)
    except (OSError, ValueError):  # TimeoutError among them: a runner that does not answer is not used
        (request / "cmd").unlink(missing_ok=True)  # first: a runner that wakes late finds nothing to run
        for fd in fds:
            os.close(fd)
        shutil.rmtree(request, ignore_errors=True)
        return None
    finally:
        os.close(wake)
    return RunnerStarted(spec, request, fds[0], fds[1])


def target_of(volumes: Mapping[str, Mapping[str, str]]) -> Path | None:
    """The host folder mounted at /target, where the runner listens; None when nothing is."""
    return next((Path(host) for host, bind in volumes.items() if bind.get("bind") == "/target"), None)


def _sweep(home: Path) -> None:
    """Remove the request folders of builds killed before they removed their own: their owner
    process is gone, or (no owner written, a pid reused) they are older than :data:`STALE`."""
    now = time.time()
    for entry in os.scandir(home):
        try:
            if not entry.is_dir(follow_symlinks=False):
                continue
            try:
                owner = (Path(entry.path) / "owner").read_text().strip()
            except OSError:
                owner = ""  # not written yet (its build is starting), or lost
            gone = owner.isdigit() and not pid_alive(int(owner))
            if gone or now - entry.stat(follow_symlinks=False).st_mtime > STALE:
                shutil.rmtree(entry.path, ignore_errors=True)
        except OSError:
            continue

