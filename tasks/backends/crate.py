"""What a crate path holds: its package name, its cdylib targets, its workspace.

``cargo metadata --no-deps`` answers when a host cargo exists (it knows every manifest
rule); otherwise Cargo.toml is read with :mod:`tomllib`, which covers what compatbuild
needs: ``[package] name``, ``[lib] name`` / ``crate-type`` and ``[workspace] members``.
A path that is a workspace root yields the cdylibs of all its members, and is built with
``--workspace``; a member path yields only its own.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from tasks.errors import CrateError
from tasks.proc import run as proc_run

T = TypeVar("T")
ADD_CDYLIB = 'add `[lib] crate-type = ["cdylib"]` to Cargo.toml'


@dataclass(frozen=True)
class CrateInfo:
    """A crate (or workspace) that builds at least one cdylib."""

    root: Path  # the directory the user named, resolved
    name: str  # package name, or the folder name of a virtual workspace
    cdylibs: tuple[str, ...]  # lib target names, e.g. "hello" -> libhello.so
    manifest: Path  # root / "Cargo.toml"
    workspace_root: Path  # the directory to mount: the workspace's root (== root if none)
    workspace: bool = False  # root is a workspace root: build every member

    @property
    def library_files(self) -> tuple[str, ...]:
        """The file names cargo gives the cdylibs on Linux."""
        return tuple(f"lib{n}.so" for n in self.cdylibs)


def inspect_crate(path: Path, *, use_cargo: bool | None = None) -> CrateInfo:
    """Read the crate at ``path``; CrateError when it is missing or builds no cdylib.

    ``use_cargo`` None asks cargo when it is on PATH; False always reads the TOML.
    """
    root = Path(path).expanduser()
    if not root.exists():
        raise CrateError(f"{root}: no such crate directory")
    root = root.resolve()
    if root.is_file():
        if root.name != "Cargo.toml":
            raise CrateError(f"{root}: not a crate directory or Cargo.toml")
        root = root.parent
    manifest = root / "Cargo.toml"
    if not manifest.is_file():
        raise CrateError(f"{root}: no Cargo.toml (is this a Rust crate?)")
    cargo = shutil.which("cargo") if use_cargo is not False else None
    if use_cargo and cargo is None:
        raise CrateError("cargo is not on PATH")
    info = _from_cargo(cargo, root, manifest) if cargo else _from_toml(root, manifest)
    if not info.cdylibs:
        raise CrateError(f"{root}: crate '{info.name}' has no cdylib target; {ADD_CDYLIB}")
    return info


# ----------------------------------------------------------------------------- cargo


def _from_cargo(cargo: str, root: Path, manifest: Path) -> CrateInfo:
    env = {**os.environ, "CARGO_TERM_COLOR": "never"}
    proc = proc_run([cargo, "metadata", "--no-deps", "--format-version", "1", "--manifest-path", str(manifest)],
                    what=f"{root}: cargo metadata", timeout=300, error=CrateError, cwd=root, env=env)
    if proc.returncode != 0:
        raise CrateError(f"{root}: cargo metadata failed: {_first_error(proc.stderr)}")
    try:
        meta = json.loads(proc.stdout)
        ws_root = Path(meta["workspace_root"]).resolve()
        packages: list[dict[str, Any]] = meta["packages"]
    except (ValueError, KeyError, TypeError) as exc:
        raise CrateError(f"{root}: unexpected cargo metadata output: {exc}") from None
    own = [p for p in packages if Path(p["manifest_path"]).resolve() == manifest.resolve()]
    # a virtual manifest, or a root package with members: build every member
    is_ws_root = not own or (ws_root == root and len(packages) > 1)
    chosen = packages if is_ws_root else own
    cdylibs = [
        t["name"] for p in chosen for t in p.get("targets", [])
        if "cdylib" in (t.get("crate_types") or t.get("kind") or [])
    ]
    name = own[0]["name"] if own else root.name
    return CrateInfo(root, name, tuple(_unique(cdylibs)), manifest, ws_root, is_ws_root)


def _first_error(stderr: str) -> str:
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    for ln in lines:
        if ln.startswith("error"):
            rest = lines[lines.index(ln) + 1:]
            detail = next((r for r in rest if not r.startswith(("-->", "|", "Caused by"))), "")
            return f"{ln} {detail}".strip() if ln.endswith(":") and detail else ln
    return lines[-1] if lines else "no output"


# ----------------------------------------------------------------------------- tomllib


def _load(manifest: Path) -> dict[str, Any]:
    import tomllib  # here: a replayed result (tasks/memo.py) reads no manifest

    try:
        return tomllib.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise CrateError(f"{manifest}: cannot read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise CrateError(f"{manifest}: not valid TOML: {exc}") from None


def _package_cdylibs(data: dict[str, Any], manifest: Path) -> tuple[str, list[str]]:
    pkg = data.get("package")
    if not isinstance(pkg, dict) or not isinstance(pkg.get("name"), str):
        raise CrateError(f"{manifest}: [package] name is missing")
    name: str = pkg["name"]
    lib = data.get("lib")
    if not isinstance(lib, dict):
        return name, []
    types = lib.get("crate-type", lib.get("crate_type", []))
    if not isinstance(types, list) or "cdylib" not in types:
        return name, []
    lib_name = lib.get("name") if isinstance(lib.get("name"), str) else name
    return name, [str(lib_name).replace("-", "_")]


def workspace_members(root: Path, ws: dict[str, Any], manifest: Path) -> list[Path]:
    """The member folders a ``[workspace]`` table names (globs expanded, ``exclude`` left out)."""
    patterns = ws.get("members", [])
    excluded = {(root / e).resolve() for e in ws.get("exclude", []) if isinstance(e, str)}
    if not isinstance(patterns, list):
        raise CrateError(f"{manifest}: [workspace] members must be a list")
    found: list[Path] = []
    for pattern in patterns:
        if not isinstance(pattern, str):
            raise CrateError(f"{manifest}: [workspace] members must be strings")
        hits = sorted(root.glob(pattern)) if any(c in pattern for c in "*?[") else [root / pattern]
        for hit in hits:
            hit = hit.resolve()
            if hit in excluded or not (hit / "Cargo.toml").is_file():
                if not any(c in pattern for c in "*?["):
                    raise CrateError(f"{manifest}: workspace member {pattern} has no Cargo.toml")
                continue
            found.append(hit)
    return _unique(found)


def _from_toml(root: Path, manifest: Path) -> CrateInfo:
    data = _load(manifest)
    ws = data.get("workspace")
    if isinstance(ws, dict):
        cdylibs: list[str] = []
        name = root.name
        if "package" in data:
            name, own = _package_cdylibs(data, manifest)
            cdylibs += own
        for member in workspace_members(root, ws, manifest):
            if member == root:
                continue
            _, libs = _package_cdylibs(_load(member / "Cargo.toml"), member / "Cargo.toml")
            cdylibs += libs
        return CrateInfo(root, name, tuple(_unique(cdylibs)), manifest, root, True)
    name, libs = _package_cdylibs(data, manifest)
    return CrateInfo(root, name, tuple(libs), manifest, workspace_root_above(root), False)


def workspace_root_above(root: Path) -> Path:
    """The nearest ancestor whose Cargo.toml has a [workspace] listing ``root``, else root."""
    import tomllib  # here: a replayed result (tasks/memo.py) reads no manifest

    for parent in root.parents:
        m = parent / "Cargo.toml"
        if not m.is_file():
            continue
        try:
            data = tomllib.loads(m.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
            continue
        ws = data.get("workspace")
        if isinstance(ws, dict):
            try:
                if root in workspace_members(parent, ws, m):
                    return parent
            except CrateError:
                continue
    return root


def _unique(items: list[T]) -> list[T]:
    seen: list[T] = []
    for i in items:
        if i not in seen:
            seen.append(i)
    return seen
