"""Settings every task shares: where the lockfile and the cache are, mirrors, parallelism.

Defaults live beside the invoke collection (``ns.configure``) under the ``compatbuild``
key, so ``invoke.yaml``, ``INVOKE_COMPATBUILD_CACHE``-style env vars and ``--lock`` flags
override them. This module never imports invoke: the task layer builds a Settings.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tasks.errors import CompatError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULTS: dict[str, Any] = {
    "lock": str(PROJECT_ROOT / "rsrc.lock.toml"),
    "cache": "",  # empty: $COMPATBUILD_CACHE, else $XDG_CACHE_HOME/compatbuild
    "out": str(PROJECT_ROOT / "out"),
    "jobs": 4,
    "mirrors": {},
    "progress": "auto",  # auto (only on a terminal), always, never
}


def default_cache_root() -> Path:
    env = os.environ.get("COMPATBUILD_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "compatbuild"


def _jobs(value: Any) -> int:
    try:
        jobs = int(value)
    except (TypeError, ValueError):
        jobs = 0
    if jobs < 1:
        raise CompatError(f"config compatbuild.jobs must be a whole number of 1 or more, not {value!r}")
    return jobs


@dataclass(frozen=True)
class Settings:
    """Resolved settings: paths are absolute, mirrors map URL prefixes to replacements."""

    lock: Path
    cache: Path
    out: Path
    jobs: int = 4
    mirrors: Mapping[str, str] = field(default_factory=dict)
    progress: str = "auto"

    @classmethod
    def from_mapping(cls, cfg: Mapping[str, Any], *, lock: str = "") -> Settings:
        """Build from the ``compatbuild`` config mapping; ``lock`` overrides the lockfile."""
        merged = {**DEFAULTS, **{k: v for k, v in cfg.items() if k in DEFAULTS}}
        cache = str(merged["cache"]) or str(default_cache_root())
        return cls(
            lock=Path(lock or merged["lock"]).expanduser().resolve(),
            cache=Path(cache).expanduser().resolve(),
            out=Path(merged["out"]).expanduser().resolve(),
            jobs=_jobs(merged["jobs"]),
            mirrors=dict(merged["mirrors"] or {}),
            progress=str(merged["progress"]),
        )

    def mirror(self, url: str) -> str:
        """Rewrite ``url`` through the longest matching mirror prefix."""
        best = ""
        for prefix in self.mirrors:
            if url.startswith(prefix) and len(prefix) > len(best):
                best = prefix
        return self.mirrors[best] + url[len(best):] if best else url
