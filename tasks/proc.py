"""The one way compatbuild runs a program on this machine: an argument list, a deadline, one-line errors.

:func:`run` collects the output; :func:`stream` hands stderr to a callback line by line
while it collects stdout (cargo's JSON). Either way a program that cannot start, or that
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
    try:
        proc = subprocess.Popen(  # noqa: S603 - an argument list, never a shell
            list(argv), cwd=cwd, env=dict(env) if env is not None else None, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, errors="replace",
        )
    except OSError as exc:
        raise error(f"{what}: cannot run {argv[0]}: {exc.strerror or exc}") from None
    err_lines: list[str] = []
    out_parts: list[str] = []

    def pump_err() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            err_lines.append(line)
            on_stderr(line.rstrip("\n"))

    def pump_out() -> None:
        assert proc.stdout is not None
        out_parts.append(proc.stdout.read())

    readers = [threading.Thread(target=f, daemon=True) for f in (pump_err, pump_out)]
    for r in readers:
        r.start()
    # A blocking wait with a timer to kill at the deadline: Popen.wait(timeout) polls, every
    # 50 ms, and so returns up to 50 ms after the program ended (on every build).
    expired = threading.Event()

    def expire() -> None:
        expired.set()
        proc.kill()

    timer = threading.Timer(timeout, expire)
    timer.daemon = True
    timer.start()
    try:
        status = proc.wait()
    except BaseException:  # Ctrl-C: the child goes with us
        proc.kill()
        proc.wait()
        raise
    finally:
        timer.cancel()
    if expired.is_set():
        raise error(f"{what}: {Path(argv[0]).name} did not finish within {timeout:g} s (killed)")
    for r in readers:
        r.join()
    return status, "".join(out_parts), "".join(err_lines)


def last_line(text: str, default: str = "no output") -> str:
    """The last non-empty line of a program's output: usually its own error."""
    return (text.strip().splitlines() or [default])[-1]


def environ(**extra: str) -> dict[str, str]:
    """This process's environment with ``extra`` set."""
    return {**os.environ, **extra}
