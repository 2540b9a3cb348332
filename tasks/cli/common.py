"""What every invoke task shares: settings from config, and errors turned into exits."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any, TypeVar

import docker.errors
import requests
import urllib3.exceptions
from invoke.context import Context
from invoke.exceptions import Exit

from tasks.errors import CompatError, DockerError
from tasks.settings import Settings, env_overrides

F = TypeVar("F", bound=Callable[..., Any])

LOCK_HELP = "lockfile to use (default: config compatbuild.lock, i.e. ./rsrc.lock.toml)"


def settings(c: Context, lock: str = "") -> Settings:
    """Resolve Settings from invoke config (invoke.yaml, INVOKE_COMPATBUILD_* env) and flags.

    ConfigError for an unknown key or an ill-typed value, from whichever source.
    """
    cfg = dict(c.config.get("compatbuild", {})) if hasattr(c, "config") else {}
    prefix = str(getattr(getattr(c, "config", None), "_env_prefix", None) or "INVOKE_")
    cfg.update(env_overrides(os.environ, prefix))
    return Settings.from_mapping(cfg, lock=lock)


def reports_errors(func: F) -> F:
    """Turn a CompatError into ``invoke.Exit``: one line on stderr, the error's exit code."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except CompatError as exc:
            raise Exit(f"compatbuild: {exc}", code=exc.exit_code) from None
        except (docker.errors.DockerException, requests.RequestException, urllib3.exceptions.HTTPError) as exc:
            # docker-py talks HTTP to the daemon: a daemon that dies mid-build lands here.
            raise Exit(f"compatbuild: lost the Docker daemon: {_first_line(exc)}", code=DockerError.exit_code) from None
        except OSError as exc:  # a disk error in the cache or the output folder
            where = f"{exc.filename}: " if exc.filename else ""
            raise Exit(f"compatbuild: {where}{exc.strerror or _first_line(exc)}", code=1) from None
        except KeyboardInterrupt:
            raise Exit("compatbuild: interrupted", code=130) from None

    return wrapper  # type: ignore[return-value]


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
