"""Parse and validate ``rsrc.lock.toml``: every upstream input, pinned.

The lockfile is the single source of trust. It is parsed with :mod:`tomllib` into frozen
dataclasses and validated field by field; every error names the file, the entry and the
field, e.g. ``rsrc.lock.toml: artifact 'llvm': sha256 must be 64 hex digits``.

Schema 2 (schema 1 — one ``[target]`` and a top-level ``[base]`` — still loads)::

    schema = 2
    default_target = "fedora20"   which [targets.*] is used when none is asked for
    [build]             linker = "llvm" (LINKERS: how the builder image links)
    [targets.<name>]    glibc ("2.18"), arch ("x86_64" or "aarch64": tasks/arches.py),
                        packages (what the rpms stage installs),
                        repos (the repositories `invoke rpms --refresh` resolves them from),
                        rpm_key (the [[key]] whose pinned fingerprint must sign its RPMs;
                        a target without one, like the Debian test profile, pins no RPMs),
                        cross_from (an arch other than x86_64: the x86_64 target whose builder
                        image the docker backend cross-links in; its packages are then the
                        sysroot's, tasks/backends/cross.py)
    [targets.<name>.base]  image (a reference), digest (registry manifest digest) and/or id
    [[key]]             name, url, sha256 (optional), fingerprints = [...]
    [[artifact]]        name, url, sha256, filename (optional), alt_urls (optional),
                        signature_url + key (optional detached signature),
                        checksums_url + checksums_signature_url + key (optional signed list)
    [[rpm]]             target (optional when there is one target), name, url, sha256

:func:`load` selects one target (``target=`` or ``default_target``); the Lockfile it returns
carries that target, its base image and only its RPMs, so every step downstream sees one
target, and caches and outputs are keyed by ``target.name``.
"""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path
from typing import Any

from tasks import arches
from tasks.errors import LockfileError
from tasks.inputs.lockcheck import _FPR, _GLIBC, _NAME
from tasks.inputs.lockcheck import Validator as _Validator
from tasks.inputs.lockmodel import (  # the model, re-exported: callers import it from here
    ARCHES,
    DOWNLOAD_MAX,
    KEY_MAX,
    LINKERS,
    SCHEMA_VERSION,
    SCHEMAS,
    UNPINNED_MAX,
    Artifact,
    BaseImage,
    Key,
    Lockfile,
    Resource,
    Rpm,
    Target,
    url_basename,
)
from tasks.inputs.urls import redact

__all__ = [
    "ARCHES",
    "DOWNLOAD_MAX",
    "KEY_MAX",
    "LINKERS",
    "SCHEMA_VERSION",
    "SCHEMAS",
    "UNPINNED_MAX",
    "Artifact",
    "BaseImage",
    "Key",
    "Lockfile",
    "Resource",
    "Rpm",
    "Target",
    "url_basename",
    "load",
    "parse",
]


def load(path: Path, target: str | None = None, *, linker: str | None = None) -> Lockfile:
    """Read and validate a lockfile for one target (default: its ``default_target``).

    ``linker`` overrides the file's ``[build] linker`` (the ``--linker`` flag). Raises
    LockfileError naming file, entry and field.
    """
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8-sig"))  # a UTF-8 BOM is dropped
    except FileNotFoundError:
        raise LockfileError(f"{path}: lockfile not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise LockfileError(f"{path}: cannot read lockfile: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise LockfileError(f"{path.name}: not valid TOML: {exc}") from None
    except RecursionError:
        raise LockfileError(f"{path.name}: not valid TOML: nested too deeply") from None
    lock = parse(data, path, target=target)
    if linker is not None and linker != lock.linker:
        if linker not in LINKERS:
            raise LockfileError(f"--linker must be one of {', '.join(LINKERS)}, not {linker!r}")
        lock = dataclasses.replace(lock, linker=linker)
    return lock


def parse(data: dict[str, Any], path: Path, *, target: str | None = None) -> Lockfile:
    """Validate an already-decoded lockfile mapping and select ``target``."""
    v = _Validator(path.name)
    schema = data.get("schema")
    if schema not in SCHEMAS:
        raise LockfileError(
            f"{path.name}: unknown schema version {schema!r} (this compatbuild reads "
            f"{', '.join(map(str, SCHEMAS))}; schema 2 is described in tasks/inputs/lockfile.py)"
        )
    common = {"schema", "key", "artifact", "rpm"}
    if schema == 1:
        v.unknown(data, "top level", common | {"target", "base"})
        target_t = v.table(data, "target", "target")
        v.unknown(target_t, "target", {"name", "glibc", "packages", "rpm_key"})
        name = v.name(target_t, "target")
        targets = {name: (_target(v, target_t, name, "target"), _base(v, v.table(data, "base", "base"), "base"))}
        default, linker = name, "llvm"
    else:
        v.unknown(data, "top level", common | {"default_target", "targets", "build"})
        targets = _targets(v, v.table(data, "targets", "targets"))
        default = v.string(data, "top level", "default_target", pattern=_NAME, optional=True) or ""
        if not default:
            if len(targets) != 1:
                raise LockfileError(f"{path.name}: default_target is missing (targets: {', '.join(targets)})")
            default = next(iter(targets))
        if default not in targets:
            raise LockfileError(f"{path.name}: default_target '{default}' is not a [targets.{default}] table")
        build_t = data.get("build", {})
        if not isinstance(build_t, dict):
            raise LockfileError(f"{path.name}: [build] must be a table")
        v.unknown(build_t, "build", {"linker"})
        linker = v.string(build_t, "build", "linker", optional=True) or "llvm"
        if linker not in LINKERS:
            raise LockfileError(f"{path.name}: build: linker must be one of {', '.join(LINKERS)}, not {linker!r}")
    chosen = target or default
    if chosen not in targets:
        raise LockfileError(f"{path.name}: no target '{chosen}' (targets: {', '.join(targets)})")
    selected, base = targets[chosen]

    keys = tuple(v.each(data, "key", _key))
    artifacts = tuple(v.each(data, "artifact", _artifact))
    all_rpms = tuple(v.each(data, "rpm", _rpm, scope=lambda t: str(t.get("target") or default)))
    for r in all_rpms:
        if r.target and r.target not in targets:
            raise LockfileError(f"{path.name}: rpm '{r.name}': target '{r.target}' is not a target")
    rpms = tuple(r for r in all_rpms if (r.target or default) == chosen)
    _one_pin_per_url(path.name, [*(("artifact", a) for a in artifacts), *(("key", k) for k in keys),
                                 *(("rpm", r) for r in all_rpms)])
    key_names = {k.name for k in keys}
    for t, _b in targets.values():
        if t.rpm_key and t.rpm_key not in key_names:
            raise LockfileError(f"{path.name}: target '{t.name}': rpm_key '{t.rpm_key}' is not a [[key]]")
        _check_cross(path.name, t, {n: tb[0] for n, tb in targets.items()})
    for a in artifacts:
        signed = a.signature_url or a.checksums_signature_url
        if signed and not a.key:
            raise LockfileError(f"{path.name}: artifact '{a.name}': key is required with a signature")
        if a.key and a.key not in key_names:
            raise LockfileError(f"{path.name}: artifact '{a.name}': key '{a.key}' is not a [[key]]")
        if a.checksums_url and not a.checksums_signature_url:
            raise LockfileError(
                f"{path.name}: artifact '{a.name}': checksums_url needs checksums_signature_url"
            )
    return Lockfile(path=path, target=selected, base=base, keys=keys, artifacts=artifacts, rpms=rpms,
                    schema=int(schema), linker=linker, targets=tuple(targets))


def _one_pin_per_url(file: str, entries: list[tuple[str, Artifact | Key | Rpm]]) -> None:
    """Two entries fetching one URL must pin the same bytes: the download keeps one per URL."""
    seen: dict[str, tuple[str, Artifact | Key | Rpm]] = {}
    for kind, e in entries:
        if e.sha256 is None:
            continue
        first = seen.setdefault(e.url, (kind, e))
        other = first[1]
        if other is not e and (other.sha256, other.size) != (e.sha256, e.size):
            field = "sha256" if other.sha256 != e.sha256 else "size"
            raise LockfileError(f"{file}: {kind} '{e.name}': url {redact(e.url)} is also {first[0]} "
                                f"'{other.name}', with another {field}")


def _targets(v: _Validator, table: dict[str, Any]) -> dict[str, tuple[Target, BaseImage]]:
    if not table:
        raise LockfileError(f"{v.file}: [targets] defines no target")
    out: dict[str, tuple[Target, BaseImage]] = {}
    for name, t in table.items():
        where = f"target '{name}'"
        if not isinstance(t, dict):
            raise LockfileError(f"{v.file}: {where} must be a table ([targets.{name}])")
        if not _NAME.fullmatch(name):
            raise LockfileError(f"{v.file}: {where}: a target name is letters, digits and ._+-")
        v.unknown(t, where, {"glibc", "arch", "packages", "repos", "base", "rpm_key", "cross_from"})
        out[name] = (_target(v, t, name, where), _base(v, v.table(t, "base", f"targets.{name}.base"), f"{where}: base"))
    return out


def _target(v: _Validator, t: dict[str, Any], name: str, where: str) -> Target:
    packages = t.get("packages", [])
    if not isinstance(packages, list) or not all(isinstance(p, str) and _NAME.fullmatch(p) for p in packages):
        raise LockfileError(f"{v.file}: {where}: packages must be a list of package names")
    arch = v.string(t, where, "arch", optional=True) or "x86_64"
    if arch not in ARCHES:
        raise LockfileError(f"{v.file}: {where}: arch must be one of {', '.join(ARCHES)}, not {arch!r}")
    repos = t.get("repos", [])
    if not isinstance(repos, list):
        raise LockfileError(f"{v.file}: {where}: repos must be a list of URLs")
    glibc = v.required(t, where, "glibc", pattern=_GLIBC, what="a version like 2.18")
    first = arches.get(arch).first_glibc
    if tuple(int(p) for p in glibc.split(".")) < first:
        raise LockfileError(f"{v.file}: {where}: glibc {glibc} predates {arch} (its first glibc is "
                            f"{'.'.join(map(str, first))})")
    return Target(
        name=name,
        glibc=glibc,
        packages=tuple(packages),
        arch=arch,
        repos=tuple(v.url({"repos": u}, where, "repos") for u in repos),
        rpm_key=v.string(t, where, "rpm_key", pattern=_NAME, optional=True),
        cross_from=v.string(t, where, "cross_from", pattern=_NAME, optional=True) or "",
    )


def _check_cross(file: str, t: Target, targets: dict[str, Target]) -> None:
    """``cross_from`` names another target, of x86_64 (where the builder image runs), only on
    a target of another arch."""
    if not t.cross_from:
        return
    where = f"{file}: target '{t.name}': cross_from"
    if t.arch == "x86_64":
        raise LockfileError(f"{where} is for a target of another arch; an x86_64 target builds natively")
    host = targets.get(t.cross_from)
    if host is None:
        raise LockfileError(f"{where} '{t.cross_from}' is not a target")
    if host.arch != "x86_64" or host.cross_from:
        raise LockfileError(f"{where} '{t.cross_from}' must be an x86_64 target that builds natively")


def _base(v: _Validator, t: dict[str, Any], where: str) -> BaseImage:
    v.unknown(t, where, {"image", "digest", "id"})
    base = BaseImage(
        image=v.required(t, where, "image"),
        digest=v.digest(t, where, "digest"),
        id=v.digest(t, where, "id"),
    )
    if not base.digest and not base.id:
        raise LockfileError(f"{v.file}: {where}: pin the image with 'digest' or 'id'")
    return base


def _key(v: _Validator, t: dict[str, Any], where: str) -> Key:
    v.unknown(t, where, {"name", "url", "sha256", "size", "fingerprints"})
    fprs = t.get("fingerprints")
    if not isinstance(fprs, list) or not fprs:
        raise LockfileError(f"{v.file}: {where}: fingerprints must be a non-empty list")
    clean = []
    for f in fprs:
        f2 = f.replace(" ", "").upper() if isinstance(f, str) else ""
        if not _FPR.fullmatch(f2):
            raise LockfileError(f"{v.file}: {where}: fingerprint {f!r} must be 40 hex digits")
        clean.append(f2)
    return Key(
        name=v.name(t, where),
        url=v.url(t, where, "url"),
        sha256=v.sha256(t, where, optional=True),
        fingerprints=tuple(clean),
        size=v.size(t, where),
    )


def _artifact(v: _Validator, t: dict[str, Any], where: str) -> Artifact:
    v.unknown(
        t,
        where,
        {"name", "url", "sha256", "filename", "alt_urls", "signature_url", "checksums_url",
         "checksums_signature_url", "key", "note", "size"},
    )
    url = v.url(t, where, "url")
    alt = t.get("alt_urls", [])
    if not isinstance(alt, list) or not all(isinstance(u, str) for u in alt):
        raise LockfileError(f"{v.file}: {where}: alt_urls must be a list of URLs, not {redact(repr(alt))}")
    filename = v.string(t, where, "filename", pattern=_NAME, what="a plain file name", optional=True)
    return Artifact(
        name=v.name(t, where),
        url=url,
        sha256=v.sha256(t, where, optional=False) or "",
        filename=filename or _safe_filename(v, where, url),
        alt_urls=tuple(v.url({"alt_urls": u}, where, "alt_urls") for u in alt),
        signature_url=v.url(t, where, "signature_url", optional=True),
        checksums_url=v.url(t, where, "checksums_url", optional=True),
        checksums_signature_url=v.url(t, where, "checksums_signature_url", optional=True),
        key=v.string(t, where, "key", pattern=_NAME, optional=True),
        size=v.size(t, where),
    )


def _rpm(v: _Validator, t: dict[str, Any], where: str) -> Rpm:
    v.unknown(t, where, {"name", "url", "sha256", "target", "size"})
    url = v.url(t, where, "url")
    _safe_filename(v, where, url)
    target = v.string(t, where, "target", pattern=_NAME, optional=True) or ""
    return Rpm(name=v.name(t, where), url=url, sha256=v.sha256(t, where, optional=False) or "", target=target,
               size=v.size(t, where))


def _safe_filename(v: _Validator, where: str, url: str) -> str:
    name = url_basename(url)
    if not _NAME.fullmatch(name):
        raise LockfileError(f"{v.file}: {where}: url must end in a plain file name, not {name!r}")
    return name
