"""Settings every task shares: where the lockfile and the cache are, mirrors, parallelism.

Defaults live beside the invoke collection (``ns.configure``) under the ``compatbuild``
key, so ``invoke.yaml``, ``INVOKE_COMPATBUILD_CACHE``-style env vars and ``--lock`` flags
override them. This module never imports invoke: the task layer builds a Settings.

Every value is checked here, whatever its source, and a bad one is a one-line
:class:`~tasks.errors.ConfigError`: an unknown key (a typo in invoke.yaml or in an
``INVOKE_COMPATBUILD_*`` name), ``jobs`` that is not a whole number of 1 or more, a
``progress`` other than auto/always/never, ``mirrors`` that is not a mapping of URL prefix
to replacement, a ``max_download`` that is not a number of bytes. Two defaults are shaped
around invoke, whose own errors are tracebacks: invoke casts an env value to the type of
the default it overrides (``int("abc")``), so ``jobs`` (and ``max_download``) defaults to
None ("built in": 4) and its env value reaches us as text; and invoke
cannot merge a mapping over a non-mapping default or the reverse, so ``mirrors`` has no
invoke default at all, and :func:`env_overrides` reads ``INVOKE_COMPATBUILD_MIRRORS``
(a JSON object) itself.
"""

from __future__ import annotations

import difflib
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from tasks.errors import ConfigError

# The most bytes a pinned file without a pinned size may bring (config compatbuild.max_download);
# here, not beside the lockfile's other caps, so that loading the task collection (which needs
# DEFAULTS) does not load the lockfile model.
DOWNLOAD_MAX = 1 << 30

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_JOBS = 4
DEFAULT_DEADLINE = 1800.0
DEFAULT_WARM_IDLE = 300  # seconds: a few minutes of an edit-build loop
PROGRESS = ("auto", "always", "never")  # auto: bars only on a terminal
DEFAULTS: dict[str, Any] = {
    "lock": str(PROJECT_ROOT / "rsrc.lock.toml"),
    "cache": "",  # empty: $COMPATBUILD_CACHE, else $XDG_CACHE_HOME/compatbuild
    "out": str(PROJECT_ROOT / "out"),
    "jobs": None,  # None: DEFAULT_JOBS downloads at once
    "progress": "auto",
    "target": "",  # empty: the lockfile's default_target
    "linker": "",  # empty: the lockfile's [build] linker
    "deadline": None,  # None: DEFAULT_DEADLINE seconds per download URL, retries included
    "backend": "docker",  # docker: the target's builder image; zig: cargo-zigbuild, no Docker
    "registry": "",  # REGISTRY/REPO to pull stage images from before building; empty: none
    "remote": "auto",  # auto: files travel by archive when DOCKER_HOST is tcp:// or ssh://; yes; no
    "host_mode": "auto",  # smoke: auto (stub when the library has host symbols, else strict), stub, strict
    "warm_idle": None,  # None: DEFAULT_WARM_IDLE s a warm build container waits for the next build; 0: none
    "max_download": None,  # None: DOWNLOAD_MAX (1 GiB) at most for a pinned file without a pinned size
}
BACKENDS = ("docker", "zig")
REMOTE = ("auto", "yes", "no")
HOST_MODES = ("auto", "stub", "strict")  # how smoke provides a plugin's host symbols (tasks.dlopen.hostmode)
KEYS = (*DEFAULTS, "mirrors")  # mirrors: URL prefix -> replacement; {} when not set


def default_cache_root() -> Path:
    env = os.environ.get("COMPATBUILD_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "compatbuild"


def parse_jobs(value: object, where: str = "config compatbuild.jobs") -> int:
    """A whole number of 1 or more, from an int (invoke.yaml) or text (env, ``--jobs``)."""
    jobs: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        jobs = value
    elif isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        jobs = int(value)
    if jobs is None or jobs < 1:
        raise ConfigError(f"{where} must be a whole number of 1 or more, not {value!r}")
    return jobs


def parse_idle(value: object, where: str = "config compatbuild.warm_idle") -> int:
    """Whole seconds, 0 or more (0: no warm container), from an int (invoke.yaml) or text (env)."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        return int(value)
    raise ConfigError(f"{where} must be a whole number of seconds, 0 or more (0: no warm container), not {value!r}")


_SUFFIX = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_size(value: object, where: str = "config compatbuild.max_download") -> int:
    """Bytes, more than 0, from an int (invoke.yaml) or text with an optional K/M/G/T suffix
    (powers of 1024; env, invoke.yaml): ``5000``, ``"2G"``."""
    size: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        size = value
    elif isinstance(value, str):
        text = value.strip().upper()
        unit = text[-1:] if text[-1:] in _SUFFIX else ""
        digits = text[:len(text) - len(unit)].strip()
        if digits.isascii() and digits.isdigit():
            size = int(digits) * _SUFFIX[unit]
    if size is None or size < 1:
        raise ConfigError(f"{where} must be a whole number of bytes above 0 (a K, M or G suffix "
                          f"allowed: 2G), not {value!r}")
    return size


def parse_deadline(value: object, where: str = "config compatbuild.deadline") -> float:
    """Seconds, more than 0, from a number (invoke.yaml) or text (env)."""
    seconds: float | None = None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str):
        try:
            seconds = float(value.strip()) if value.strip().isascii() else None
        except ValueError:
            seconds = None
    if seconds is None or not 0 < seconds < float("inf"):
        raise ConfigError(f"{where} must be a number of seconds above 0, not {value!r}")
    return seconds


def _mirrors(value: object) -> dict[str, str]:
    where = "config compatbuild.mirrors"
    if value is None:
        return {}
    given = value
    if isinstance(value, str):  # INVOKE_COMPATBUILD_MIRRORS holds a JSON object
        try:
            value = json.loads(value) if value.strip() else {}
        except ValueError:
            pass
    items = _items(value)
    if items is None or not all(isinstance(k, str) and isinstance(v, str) for k, v in items):
        raise ConfigError(f"{where} must be a mapping of URL prefix to replacement "
                          f"(in the environment: a JSON object), not {given!r}")
    return {str(k): str(v) for k, v in items}


def _items(value: object) -> list[tuple[object, object]] | None:
    """The pairs of a mapping (a dict, or invoke's DataProxy, which is not a Mapping)."""
    keys = getattr(value, "keys", None)
    if isinstance(value, (str, bytes)) or not callable(keys):
        return None
    return [(k, value[k]) for k in keys()]  # type: ignore[index]


def config_section(value: object) -> dict[str, Any]:
    """The ``compatbuild`` config value as a dict; ConfigError unless it is a mapping of settings."""
    items = _items(value)
    if items is None:
        raise ConfigError(f"config compatbuild must be a mapping of settings, not {value!r}")
    return {str(k): v for k, v in items}


_SHAPES = {"list": "a list", "str": "text", "int": "a number", "float": "a number", "bool": "a boolean"}


def check_config_document(data: object) -> None:
    """ConfigError unless ``data``, one loaded config file (invoke.yaml), is a mapping whose
    ``compatbuild`` section, when it has one, holds settings :class:`Settings` accepts.

    For the files invoke itself merges (:mod:`tasks.cli.startup`), where a wrong shape is
    invoke's traceback before any task runs.
    """
    if data is None:  # an empty file
        return
    items = _items(data)
    if items is None:
        shape = _SHAPES.get(type(data).__name__, type(data).__name__)
        raise ConfigError(f"not a mapping of settings sections (such as `compatbuild:`), but {shape}")
    section = dict(items)
    if "compatbuild" in section:
        Settings.from_mapping(config_section(section["compatbuild"]))


def _text(key: str, value: object) -> str:
    if isinstance(value, (str, os.PathLike)):
        return str(value)
    raise ConfigError(f"config compatbuild.{key} must be a path, not {value!r}")


def _word(key: str, value: object) -> str:
    if isinstance(value, str):
        return value
    raise ConfigError(f"config compatbuild.{key} must be a name, not {value!r}")


def _unknown(key: str, what: str, spell: Callable[[str], str]) -> ConfigError:
    close = difflib.get_close_matches(key, KEYS, n=1)
    hint = f"did you mean {spell(close[0])}?" if close else \
        f"known: {', '.join(spell(k) for k in sorted(KEYS))}"
    return ConfigError(f"{what}: unknown setting ({hint})")


def _check_keys(cfg: Mapping[str, Any]) -> None:
    for key in sorted(map(str, cfg)):
        if key not in KEYS:
            raise _unknown(key, f"config compatbuild.{key}", lambda k: k)


def env_overrides(environ: Mapping[str, str], prefix: str = "INVOKE_") -> dict[str, str]:
    """The ``<prefix>COMPATBUILD_*`` variables invoke does not read: an unknown name is an
    error (invoke ignores it silently), and MIRRORS comes back as text for :class:`Settings`."""
    head = f"{prefix}COMPATBUILD_"
    found: dict[str, str] = {}
    for name in sorted(environ):
        if not name.startswith(head):
            continue
        key = name[len(head):].lower()
        if key not in KEYS:
            raise _unknown(key, name, lambda k: head + k.upper())
        if key not in DEFAULTS:  # invoke reads the others itself
            found[key] = environ[name]
    return found


@dataclass(frozen=True)
class Settings:
    """Resolved settings: paths are absolute, mirrors map URL prefixes to replacements."""

    lock: Path
    cache: Path
    out: Path
    jobs: int = DEFAULT_JOBS
    mirrors: Mapping[str, str] = field(default_factory=dict)
    progress: str = "auto"
    target: str = ""  # a [targets.NAME] of the lockfile; empty: its default_target
    linker: str = ""  # llvm or rust-lld; empty: the lockfile's [build] linker
    deadline: float = DEFAULT_DEADLINE  # seconds one download URL may take, retries included
    backend: str = "docker"  # how build builds: BACKENDS
    registry: str = ""  # REGISTRY/REPO stage images are pulled from; empty: none
    remote: str = "auto"  # auto (by the daemon's address), yes (always by archive), no (bind mounts)
    host_mode: str = "auto"  # smoke's default host mode: HOST_MODES
    warm_idle: int = DEFAULT_WARM_IDLE  # docker builds exec into a container kept this long; 0: one-shot runs
    max_download: int = DOWNLOAD_MAX  # the most bytes a pinned file without a pinned size may bring

    @classmethod
    def from_mapping(cls, cfg: Mapping[str, Any], *, lock: str = "", target: str = "",
                     linker: str = "", backend: str = "") -> Settings:
        """Build from the ``compatbuild`` config mapping; flags (``lock``, ``target``,
        ``linker``, ``backend``) override it when given.

        Raises ConfigError for an unknown key or an ill-typed value.
        """
        _check_keys(cfg)
        merged = {**DEFAULTS, "mirrors": None, **cfg}
        progress = merged["progress"]
        if progress not in PROGRESS:
            raise ConfigError(f"config compatbuild.progress must be one of {', '.join(PROGRESS)}, "
                              f"not {progress!r}")
        remote = merged["remote"]
        if remote not in REMOTE:
            raise ConfigError(f"config compatbuild.remote must be one of {', '.join(REMOTE)}, not {remote!r}")
        host_mode = merged["host_mode"]
        if host_mode not in HOST_MODES:
            raise ConfigError(f"config compatbuild.host_mode must be one of {', '.join(HOST_MODES)}, "
                              f"not {host_mode!r}")
        cache = _text("cache", merged["cache"]) or str(default_cache_root())
        jobs, deadline = merged["jobs"], merged["deadline"]
        chosen = backend or merged["backend"]
        if chosen not in BACKENDS:
            where = "--backend" if backend else "config compatbuild.backend"
            raise ConfigError(f"{where} must be one of {', '.join(BACKENDS)}, not {chosen!r}")
        return cls(
            lock=Path(lock or _text("lock", merged["lock"])).expanduser().resolve(),
            cache=Path(cache).expanduser().resolve(),
            out=Path(_text("out", merged["out"])).expanduser().resolve(),
            jobs=DEFAULT_JOBS if jobs is None else parse_jobs(jobs),
            mirrors=_mirrors(merged["mirrors"]),
            progress=str(progress),
            target=target or _word("target", merged["target"]),
            linker=linker or _word("linker", merged["linker"]),
            deadline=DEFAULT_DEADLINE if deadline is None else parse_deadline(deadline),
            backend=str(chosen),
            registry=_word("registry", merged["registry"]).strip(),
            remote=str(remote),
            host_mode=str(host_mode),
            warm_idle=DEFAULT_WARM_IDLE if merged["warm_idle"] is None else parse_idle(merged["warm_idle"]),
            max_download=DOWNLOAD_MAX if merged["max_download"] is None else parse_size(merged["max_download"]),
        )

    def with_backend(self, backend: str) -> Settings:
        """These settings with the ``--backend`` flag applied (empty: unchanged); ConfigError if unknown."""
        if not backend:
            return self
        if backend not in BACKENDS:
            raise ConfigError(f"--backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
        return replace(self, backend=backend)

    def mirror(self, url: str) -> str:
        """Rewrite ``url`` through the longest matching mirror prefix."""
        best = ""
        for prefix in self.mirrors:
            if url.startswith(prefix) and len(prefix) > len(best):
                best = prefix
        return self.mirrors[best] + url[len(best):] if best else url
