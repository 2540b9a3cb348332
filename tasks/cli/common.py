"""What every invoke task shares: settings from config, and errors turned into exits.

:func:`reports_errors` is the one place an error becomes an exit: a CompatError its one line
and exit code, a disk error exit 1, an interrupt 130, and a closed stdout (``| head -1``) a
quiet 141. With ``--json``, :func:`json_document_on_failure` prints a run's document also
when the run ends before it has a result.
"""

from __future__ import annotations

import functools
import os
import select
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

from invoke.context import Context
from invoke.exceptions import Exit

from tasks.errors import CompatError, DockerError, redact
from tasks.settings import Settings, config_section, env_overrides

F = TypeVar("F", bound=Callable[..., Any])

LOCK_HELP = "lockfile to use (default: config compatbuild.lock, i.e. ./rsrc.lock.toml)"
TARGET_HELP = "the lockfile's [targets.NAME] to build for (default: config compatbuild.target, else default_target)"
LINKER_HELP = "linker strategy, llvm or rust-lld (default: config compatbuild.linker, else the lockfile's)"
_SELECTING = ("--lock", "--target", "--linker")
_resolved: list[tuple[Path, str, str]] = []  # what the tasks of this process resolved, in order


def settings(c: Context, lock: str = "", *, target: str = "", linker: str = "") -> Settings:
    """Resolve Settings from invoke config (invoke.yaml, INVOKE_COMPATBUILD_* env) and flags.

    ConfigError for an unknown key or an ill-typed value, from whichever source. Warns (on
    stderr) when tasks of one invocation resolve different lockfiles or targets: invoke gives
    each flag to the task it follows, so ``invoke download verify --lock L`` runs download
    on the default lockfile.
    """
    cfg = config_section(c.config.get("compatbuild", {})) if hasattr(c, "config") else {}
    prefix = str(getattr(getattr(c, "config", None), "_env_prefix", None) or "INVOKE_")
    cfg.update(env_overrides(os.environ, prefix))
    s = Settings.from_mapping(cfg, lock=lock, target=target, linker=linker)
    _warn_if_flags_went_elsewhere(s, given={"--lock": lock, "--target": target, "--linker": linker})
    return s


def _under_invoke() -> bool:
    """True when this process is the ``invoke`` command line (``invoke``, ``inv``, ``python -m invoke``)."""
    argv0 = Path(sys.argv[0])
    return argv0.name in ("invoke", "inv") or (argv0.name == "__main__.py" and argv0.parent.name == "invoke")


def _warn_if_flags_went_elsewhere(s: Settings, *, given: dict[str, str]) -> None:
    mine = (s.lock, s.target, s.linker)
    if not _resolved and _under_invoke():
        elsewhere = [f for f in _SELECTING if not given[f] and any(a == f or a.startswith(f + "=") for a in sys.argv)]
        if elsewhere:
            print(f"compatbuild: warning: {', '.join(elsewhere)} on this command line belongs to another task "
                  f"(invoke gives a flag to the task it follows); this task uses {s.lock}"
                  f"{f' target {s.target}' if s.target else ''}", file=sys.stderr)
    if _resolved and _resolved[-1] != mine:
        before = _resolved[-1]
        print(f"compatbuild: warning: this task uses {s.lock} (target {s.target or 'default'}), the one before "
              f"used {before[0]} (target {before[1] or 'default'}): give each task its own --lock/--target, or "
              "set INVOKE_COMPATBUILD_LOCK / INVOKE_COMPATBUILD_TARGET once", file=sys.stderr)
    _resolved.append(mine)


# A reader that stops early (`invoke audit | head -1`) closes the pipe under stdout. A C tool
# then dies of SIGPIPE, which a shell reports as 141 (128 + 13): git, grep and coreutils end so.
# compatbuild ends the same way, quietly with 141, and not with 0: the output was cut, and a
# cut audit may not have reached its verdict (exit 10) yet, so 0 would turn an unknown into a
# pass under `set -o pipefail`, while a shell without pipefail ignores 141 as for any other tool.
CLOSED_STDOUT = 141


def value_is_used() -> bool:
    """False when the running task was called by invoke's command line: its Executor keeps a
    task's return value in a dict nobody reads (our tasks never autoprint). True when a task of
    the user's called it as a function (``built = build(c, ...)`` in tasks.py), and whenever
    unsure (another executor, another invoke): then the value is made, as always."""
    from invoke.executor import Executor
    from invoke.tasks import Task

    frame: FrameType | None = sys._getframe(1)
    while frame is not None and frame.f_code is not Task.__call__.__code__:
        frame = frame.f_back
    if frame is None or frame.f_back is None or frame.f_back.f_code is not Executor.execute.__code__:
        return True
    return bool(getattr(frame.f_locals.get("self"), "autoprint", True))


def reports_errors(func: F) -> F:
    """Turn a CompatError into ``invoke.Exit``: one line on stderr, the error's exit code (see
    :func:`failure`); a closed stdout into a quiet exit ``CLOSED_STDOUT``."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            result = func(*args, **kwargs)
            sys.stdout.flush()  # a closed stdout shows here, not in the interpreter's last flush
            return result
        except Exit:
            _quiet_if_stdout_closed()
            raise
        except BaseException as exc:
            if _quiet_if_stdout_closed() and isinstance(exc, BrokenPipeError):
                raise Exit(code=CLOSED_STDOUT) from None
            found = failure(exc)
            if found is None:  # a bug: its traceback is the report
                raise
            raise Exit(f"compatbuild: {found[0]}", code=found[1]) from None

    return wrapper  # type: ignore[return-value]


def failure(exc: BaseException) -> tuple[str, int] | None:
    """The one-line error (without ``compatbuild: ``) and exit code a task's exception ends in;
    None for one that is a bug (it keeps its traceback)."""
    if isinstance(exc, CompatError):
        return str(exc), exc.exit_code
    if isinstance(exc, OSError):  # a disk error in the cache or the output folder
        where = f"{exc.filename}: " if exc.filename else ""
        return redact(f"{where}{exc.strerror or _first_line(exc)}"), 1
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted", 130
    if isinstance(exc, Exception) and _lost_daemon(exc):  # docker-py talks HTTP to the daemon
        return f"lost the Docker daemon: {_first_line(exc)}", DockerError.exit_code
    return None


@contextmanager
def json_document_on_failure(enabled: bool, document: str) -> Iterator[None]:
    """With ``--json`` (``enabled``), a run that ends in an error before it has a result still
    prints its ``document`` (``"ok": false``, the one-line error in ``"error"``, its lists empty:
    :func:`tasks.present.failure_json`) before the error goes on to stderr and its exit code."""
    try:
        yield
    except BaseException as exc:
        found = failure(exc) if enabled and not isinstance(exc, BrokenPipeError) else None
        if found is not None and not _stdout_closed():
            from tasks import present

            try:
                print(present.failure_json(document, found[0]))
            except OSError:  # stdout went away meanwhile: the error itself still goes to stderr
                pass
        raise


def _stdout_closed() -> bool:
    """True when nobody reads stdout any more: poll reports POLLERR on a pipe whose reader is
    gone. False for a terminal or a file, and when it cannot tell."""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & select.POLLERR for _fd, events in poller.poll(0))
    except (AttributeError, OSError, ValueError):
        return False


def _quiet_if_stdout_closed() -> bool:
    """When stdout is closed, point it at /dev/null, so the interpreter's last flush of what is
    still buffered cannot fail ("Exception ignored ... BrokenPipeError", exit 120); True then."""
    if not _stdout_closed():
        return False
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (AttributeError, OSError, ValueError):
        pass
    return True


def _lost_daemon(exc: Exception) -> bool:
    """True for docker-py's, requests' and urllib3's errors, without importing them to ask.

    A task that never talked to the daemon never loaded those modules, and cannot have
    raised their errors: only what ``sys.modules`` already holds is checked.
    """
    kinds = [getattr(sys.modules.get(mod), name, None) for mod, name in
             (("docker.errors", "DockerException"), ("requests", "RequestException"),
              ("urllib3.exceptions", "HTTPError"))]
    return any(isinstance(exc, k) for k in kinds if isinstance(k, type))


def _first_line(exc: BaseException) -> str:
    return redact((str(exc).strip().splitlines() or [type(exc).__name__])[0])
