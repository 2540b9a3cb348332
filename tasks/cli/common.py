"""What every invoke task shares: settings from config, and errors turned into exits."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from invoke.context import Context
from invoke.exceptions import Exit

from tasks.errors import CompatError, DockerError, redact
from tasks.settings import Settings, env_overrides

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
    cfg = dict(c.config.get("compatbuild", {})) if hasattr(c, "config") else {}
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


def reports_errors(func: F) -> F:
    """Turn a CompatError into ``invoke.Exit``: one line on stderr, the error's exit code."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except CompatError as exc:
            raise Exit(f"compatbuild: {exc}", code=exc.exit_code) from None
        except OSError as exc:  # a disk error in the cache or the output folder
            where = f"{exc.filename}: " if exc.filename else ""
            raise Exit(redact(f"compatbuild: {where}{exc.strerror or _first_line(exc)}"), code=1) from None
        except KeyboardInterrupt:
            raise Exit("compatbuild: interrupted", code=130) from None
        except Exception as exc:
            if _lost_daemon(exc):  # docker-py talks HTTP to the daemon: one that dies mid-build lands here
                raise Exit(f"compatbuild: lost the Docker daemon: {_first_line(exc)}",
                           code=DockerError.exit_code) from None
            raise

    return wrapper  # type: ignore[return-value]


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
