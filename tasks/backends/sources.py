"""What a build of a crate reads from the host: its manifests and its path packages.

cargo resolves a crate from its workspace's manifests and from every *path package* they
name (``common = { path = "../common" }``, ``[workspace.dependencies]``, ``[patch]``,
target-specific and dev/build dependency tables alike), recursively; these are the
packages ``cargo metadata`` reports with ``"source": null``. Those inside the workspace are
mounted with it; those outside it must be mounted too, or the build fails with "failed to
get `common`". They are read here from the manifests themselves (no host cargo, no
resolution, no network), and the image's own cargo is the check: it fails naming whatever
was not mounted.

A path package that inherits from its own workspace (``version.workspace = true``) needs
that workspace's root manifest as well, so its workspace root is mounted instead.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tasks.backends.crate import CrateInfo, workspace_members, workspace_root_above
from tasks.errors import CrateError

DEP_TABLES = ("dependencies", "dev-dependencies", "build-dependencies",
              "dev_dependencies", "build_dependencies")
CONFIG_FILES = (".cargo/config.toml", ".cargo/config")


@dataclass(frozen=True)
class Sources:
    """The manifests cargo reads for a crate, and the folders outside its workspace to mount."""

    workspace: Path  # mounted read-write (cargo may write Cargo.lock)
    outside: tuple[Path, ...]  # roots of path packages outside the workspace, mounted read-only
    manifests: tuple[Path, ...]  # every Cargo.toml read, plus the workspace's Cargo.lock and cargo config

    def mounts(self) -> tuple[Path, ...]:
        """Every host folder the build container needs, the workspace first."""
        return (self.workspace, *self.outside)


def find_sources(info: CrateInfo) -> Sources:
    """The workspace of ``info`` and every path package its manifests name, recursively."""
    ws = info.workspace_root
    queue = [ws / "Cargo.toml", info.manifest]
    seen: list[Path] = []
    roots: list[Path] = []
    while queue:
        manifest = queue.pop(0).resolve()
        if manifest in seen or not manifest.is_file():
            continue
        seen.append(manifest)
        data = _load(manifest)
        workspace = data.get("workspace")
        if isinstance(workspace, dict):
            queue += [m / "Cargo.toml" for m in workspace_members(manifest.parent, workspace, manifest)]
        for dep in _path_deps(data, manifest.parent):
            if not (dep / "Cargo.toml").is_file():
                raise CrateError(f"{manifest}: path dependency {dep} has no Cargo.toml")
            queue.append(dep / "Cargo.toml")
            if not dep.is_relative_to(ws):
                root = workspace_root_above(dep)
                roots.append(root)
                queue.append(root / "Cargo.toml")
    outside = sorted({r for r in roots if not r.is_relative_to(ws)})
    outside = [r for r in outside if not any(r != o and r.is_relative_to(o) for o in outside)]
    extra = [ws / "Cargo.lock", *(d / c for d in _dirs_between(info.root, ws) for c in CONFIG_FILES)]
    return Sources(ws, tuple(outside), tuple(seen) + tuple(p for p in extra if p.is_file()))


def _dirs_between(root: Path, ws: Path) -> Iterator[Path]:
    """``root`` and its parents up to and including ``ws``: where cargo looks for config."""
    yield root
    for parent in root.parents:
        if not parent.is_relative_to(ws):
            return
        yield parent


def _load(manifest: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise CrateError(f"{manifest}: cannot read: {exc}") from None


def _path_deps(data: dict[str, Any], base: Path) -> Iterator[Path]:
    """Folders named by ``path = ...`` in every dependency table of one manifest."""
    tables: list[Any] = [data.get(t) for t in DEP_TABLES]
    for spec in (data.get("target") or {}).values():
        if isinstance(spec, dict):
            tables += [spec.get(t) for t in DEP_TABLES]
    ws = data.get("workspace")
    if isinstance(ws, dict):
        tables.append(ws.get("dependencies"))
    tables += list((data.get("patch") or {}).values())
    tables.append(data.get("replace"))
    for table in tables:
        if not isinstance(table, dict):
            continue
        for dep in table.values():
            if isinstance(dep, dict) and isinstance(dep.get("path"), str):
                try:
                    yield (base / dep["path"]).resolve()
                except (RuntimeError, OSError) as exc:  # a symlink loop: "Symlink loop from ..."
                    raise CrateError(f"{base / 'Cargo.toml'}: path dependency {dep['path']!r} cannot be "
                                     f"resolved: {exc}") from None
