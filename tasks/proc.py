"""The one way compatbuild runs a program on this machine: an argument list, a deadline, one-line errors.

:func:`run` collects the output; :func:`stream` hands stderr to a callback line by line
while it collects stdout (cargo's JSON); :func:`start` begins such a run whose lines are
handed on later (a build's head start, :mod:`tasks.backends.headstart`). Either way a program that cannot start, or that
outlives its deadline (it is killed), becomes the calling step's own one-line error
(``error``, a :class:`~tasks.errors.CompatError` class) instead of a traceback. A non-zero
exit is the caller's to judge: each step words it differently (:func:`last_line` helps).
"""

from __future__ import annotations

import os
import subprocess
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from queue import SimpleQueue

from tasks.errors import CompatError, ToolError


def run(argv: Sequence[str], *, what: str, timeout: float, error: type[CompatError] = ToolError,
        cwd: Path | None = None, env: Mapping[str, str] | None = None,
        merge_stderr: bool = False) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` to completion (text output, undecodable bytes replaced); ``what`` names the step."""
    try:
        return subprocess.run(  # noqa: S603 - an argument list, never a shell
            list(argv), cwd=cwd, env=dict(env) if env is not None else None, timeout=timeout, check=False,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT if merge_stderr else subprocess.PIPE,
            text=True, errors="replace",
        )
    except OSError as exc:
        raise error(f"{what}: cannot run {argv[0]}: {exc.strerror or exc}") from None
    except subprocess.TimeoutExpired:
        raise error(f"{what}: {Path(argv[0]).name} did not finish within {timeout:g} s (killed)") from None


def stream(argv: Sequence[str], *, what: str, timeout: float, on_stderr: Callable[[str], None],
           error: type[CompatError] = ToolError, cwd: Path | None = None,
           env: Mapping[str, str] | None = None) -> tuple[int, str, str]:
    """Run ``argv``: each stderr line to ``on_stderr`` as it comes, stdout collected; (status, stdout, stderr)."""
    return start(argv, what=what, timeout=timeout, error=error, cwd=cwd, env=env).finish(on_stderr)


class Running:
    """A program started by :func:`start`: its stderr lines held until :meth:`finish` hands them on.

    Its deadline runs from its start: at ``timeout`` seconds it is killed, and :meth:`finish`
    raises the step's error.
    """

    def __init__(self, proc: subprocess.Popen[str], argv: Sequence[str], *, what: str, timeout: float,
                 error: type[CompatError], cwd: Path | None, env: Mapping[str, str] | None) -> None:
        self.argv, self.cwd, self.env = tuple(argv), cwd, dict(env) if env is not None else None
        self._proc, self._what, self._timeout, self._error = proc, what, timeout, error
        self.finished = False  # finish() was asked
        self._lines: SimpleQueue[str | None] = SimpleQueue()
        self._out: list[str] = []
        self._readers = [threading.Thread(target=f, daemon=True) for f in (self._pump_err, self._pump_out)]
        for r in self._readers:
            r.start()
        # A blocking wait with a timer to kill at the deadline: Popen.wait(timeout) polls, every
        # 50 ms, and so returns up to 50 ms after the program ended (on every build).
        self._expired = threading.Event()
        self._timer = threading.Timer(timeout, self._expire)
        self._timer.daemon = True
        self._timer.start()

    def _expire(self) -> None:
        self._expired.set()
        self._proc.kill()

    def _pump_err(self) -> None:
        assert self._proc.stderr is not None
        for line in self._proc.stderr:
            self._lines.put(line)
        self._lines.put(None)

    def _pump_out(self) -> None:
        assert self._proc.stdout is not None
        self._out.append(self._proc.stdout.read())

    def finish(self, on_stderr: Callable[[str], None]) -> tuple[int, str, str]:
        """Each stderr line to ``on_stderr`` (those it said before this was asked, first), until
        the program ends; (status, stdout, stderr)."""
        self.finished = True
        err_lines: list[str] = []
        try:
            while (line := self._lines.get()) is not None:
                err_lines.append(line)
                on_stderr(line.rstrip("\n"))
            status = self._proc.wait()
        except BaseException:  # Ctrl-C: the child goes with us
            self.kill()
            raise
        finally:
            self._timer.cancel()
        if self._expired.is_set():
            raise self._error(f"{self._what}: {Path(self.argv[0]).name} did not finish within "
                              f"{self._timeout:g} s (killed)")
        for r in self._readers:
            r.join()
        return status, "".join(self._out), "".join(err_lines)

    def kill(self) -> None:
        """Stop the program now, and wait for it."""
        self._proc.kill()
        self._proc.wait()


def start(argv: Sequence[str], *, what: str, timeout: float, error: type[CompatError] = ToolError,
          cwd: Path | None = None, env: Mapping[str, str] | None = None) -> Running:
    """``argv`` started, its stdout and stderr read as it runs (see :class:`Running`)."""
    try:
        proc = subprocess.Popen(  # noqa: S603 - an argument list, never a shell
            list(argv), cwd=cwd, env=dict(env) if env is not None else None, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, errors="replace",
        )
    except OSError as exc:
        raise error(f"{what}: cannot run {argv[0]}: {exc.strerror or exc}") from None
    return Running(proc, argv, what=what, timeout=timeout, error=error, cwd=cwd, env=env)


def last_line(text: str, default: str = "no output") -> str:
    """The last non-empty line of a program's output: usually its own error."""
    return (text.strip().splitlines() or [default])[-1]


def environ(**extra: str) -> dict[str, str]:
    """This process's environment with ``extra`` set."""
    return {**os.environ, **extra}
