"""Parse and validate ``rsrc.lock.toml``: every upstream input, pinned.

The lockfile is the single source of trust. It is parsed with :mod:`tomllib` into frozen
dataclasses and validated field by field; every error names the file, the entry and the
field, e.g. ``rsrc.lock.toml: artifact 'llvm': sha256 must be 64 hex digits``.

Schema 2 (schema 1 — one ``[target]`` and a top-level ``[base]`` — still loads)::

    schema = 2
    default_target = "fedora20"   which [targets.*] is used when none is asked for
    [build]             linker = "llvm" (LINKERS: how the builder image links)
    [targets.<name>]    glibc ("2.18"), arch ("x86_64"), packages (what the rpms stage installs),
                        repos (the repositories `invoke rpms --refresh` resolves them from),
                        rpm_key (the [[key]] whose pinned fingerprint must sign its RPMs;
                        a target without one, like the Debian test profile, pins no RPMs)
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
import re
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from tasks.errors import LockfileError
from tasks.inputs.urls import problem, redact

SCHEMA_VERSION = 2
SCHEMAS = (1, 2)
LINKERS = ("llvm", "rust-lld")  # how the builder image links: docker/builder, docker/builder-rust-lld
ARCHES = ("x86_64",)
# Every pattern is used with fullmatch: `$` would also match before a trailing newline.
_HEX64 = re.compile(r"[0-9a-f]{64}")
_FPR = re.compile(r"[0-9A-F]{40}")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")
_GLIBC = re.compile(r"\d+\.\d+")
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
UNPINNED_MAX = 1 << 20  # the most bytes taken for an unpinned signature or checksum list
KEY_MAX = 16 << 20  # ... and for a key file without a pinned size (GNU's keyring is a few MB)


@dataclass(frozen=True)
class Target:
    """The system the libraries must load on."""

    name: str
    glibc: str
    packages: tuple[str, ...] = ()  # what the rpms stage installs; `invoke rpms --refresh` pins them
    arch: str = "x86_64"
    repos: tuple[str, ...] = ()  # the package repositories `invoke rpms --refresh` resolves against
    rpm_key: str | None = None  # the [[key]] that signs this target's RPMs (tasks.inputs.rpmsig)


@dataclass(frozen=True)
class BaseImage:
    """The base image: a reference plus a registry digest and/or a local image id."""

    image: str
    digest: str | None = None
    id: str | None = None

    @property
    def pull_ref(self) -> str:
        """The reference to pull: by digest when one is pinned."""
        if self.digest:  # name@digest: a tag beside the digest is not a reference every client parses
            name = self.image.split("@")[0]
            head, _, last = name.rpartition("/")
            return f"{head + '/' if head else ''}{last.split(':')[0]}@{self.digest}"
        return self.image


@dataclass(frozen=True)
class Key:
    """A signing key file and the fingerprints it may sign with."""

    name: str
    url: str
    fingerprints: tuple[str, ...]
    sha256: str | None = None
    size: int | None = None


@dataclass(frozen=True)
class Artifact:
    """A pinned upstream file, with optional detached signature or signed checksum list."""

    name: str
    url: str
    sha256: str
    filename: str
    alt_urls: tuple[str, ...] = ()
    signature_url: str | None = None
    checksums_url: str | None = None
    checksums_signature_url: str | None = None
    key: str | None = None
    size: int | None = None


@dataclass(frozen=True)
class Rpm:
    """A pinned package of one target, installed offline into its rpms stage."""

    name: str
    url: str
    sha256: str
    target: str = ""
    size: int | None = None

    @property
    def filename(self) -> str:
        return url_basename(self.url)


@dataclass(frozen=True)
class Resource:
    """One thing to fetch: a URL, its file name, and its sha256 when pinned."""

    label: str
    url: str
    filename: str
    sha256: str | None
    alt_urls: tuple[str, ...] = ()
    size: int | None = None  # the pinned length in bytes, when the lockfile records it
    cap: int | None = None  # the most bytes taken when no size is pinned (None: the default)

    @property
    def max_bytes(self) -> int | None:
        """The most bytes a download may bring: the pinned size, else a cap; unpinned files
        (signatures, checksum lists) get a small one; a pinned file without a size none."""
        if self.size is not None:
            return self.size
        if self.cap is not None:
            return self.cap
        return None if self.sha256 else UNPINNED_MAX


@dataclass(frozen=True)
class Lockfile:
    """A parsed, validated lockfile."""

    path: Path
    target: Target
    base: BaseImage
    keys: tuple[Key, ...] = ()
    artifacts: tuple[Artifact, ...] = ()
    rpms: tuple[Rpm, ...] = ()
    schema: int = SCHEMA_VERSION
    linker: str = "llvm"
    targets: tuple[str, ...] = ()  # every target the file defines; ``target`` is the selected one

    def artifact(self, name: str) -> Artifact:
        """The artifact called ``name``, or a LockfileError naming what is there."""
        for a in self.artifacts:
            if a.name == name:
                return a
        have = ", ".join(a.name for a in self.artifacts) or "none"
        raise LockfileError(f"{self.path.name}: no artifact '{name}' (have: {have})")

    def key(self, name: str) -> Key:
        for k in self.keys:
            if k.name == name:
                return k
        raise LockfileError(f"{self.path.name}: no key '{name}'")

    def resources(self, only: str | None = None) -> Iterator[Resource]:
        """Every file the lockfile names, or those of one artifact/key/rpm name."""
        for a in self.artifacts:
            if only in (None, a.name):
                yield Resource(f"artifact {a.name}", a.url, a.filename, a.sha256, a.alt_urls, a.size)
                if a.signature_url:
                    yield _unpinned(f"signature of {a.name}", a.signature_url)
                if a.checksums_url:
                    yield _unpinned(f"checksums of {a.name}", a.checksums_url)
                if a.checksums_signature_url:
                    yield _unpinned(f"checksums signature of {a.name}", a.checksums_signature_url)
                if a.key and only is not None:
                    yield _key_resource(self.key(a.key))
        for k in self.keys:
            if only in (None, k.name):
                yield _key_resource(k)
        for r in self.rpms:
            if only in (None, r.name):
                yield Resource(f"rpm {r.name}", r.url, r.filename, r.sha256, size=r.size)


def _key_resource(k: Key) -> Resource:
    return Resource(f"key {k.name}", k.url, url_basename(k.url), k.sha256, size=k.size, cap=KEY_MAX)


def _unpinned(label: str, url: str) -> Resource:
    return Resource(label, url, url_basename(url), None)


def url_basename(url: str) -> str:
    """The last path segment of a URL, decoded."""
    return unquote(urlparse(url).path.rstrip("/").rsplit("/", 1)[-1])


def load(path: Path, target: str | None = None, *, linker: str | None = None) -> Lockfile:
    """Read and validate a lockfile for one target (default: its ``default_target``).

    ``linker`` overrides the file's ``[build] linker`` (the ``--linker`` flag). Raises
    LockfileError naming file, entry and field.
    """
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
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
        v.unknown(t, where, {"glibc", "arch", "packages", "repos", "base", "rpm_key"})
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
    return Target(
        name=name,
        glibc=v.required(t, where, "glibc", pattern=_GLIBC, what="a version like 2.18"),
        packages=tuple(packages),
        arch=arch,
        repos=tuple(v.url({"repos": u}, where, "repos") for u in repos),
        rpm_key=v.string(t, where, "rpm_key", pattern=_NAME, optional=True),
    )


def _base(v: _Validator, t: dict[str, Any], where: str) -> BaseImage:
    v.unknown(t, where, {"image", "digest", "id"})
    base = BaseImage(
        image=v.required(t, where, "image"),
        digest=v.string(t, where, "digest", pattern=_DIGEST, what="sha256:<64 hex>", optional=True),
        id=v.string(t, where, "id", pattern=_DIGEST, what="sha256:<64 hex>", optional=True),
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


class _Validator:
    """Small typed accessors that raise LockfileError naming file, entry and field."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.seen: dict[str, set[str]] = {}

    def table(self, data: dict[str, Any], key: str, where: str) -> dict[str, Any]:
        t = data.get(key)
        if not isinstance(t, dict):
            raise LockfileError(f"{self.file}: [{where}] table is missing")
        return t

    def each(self, data: dict[str, Any], kind: str, make: Any,
             scope: Callable[[dict[str, Any]], str] | None = None) -> Iterator[Any]:
        """Each ``[[kind]]`` table made into an object; names are unique within ``scope``."""
        items = data.get(kind, [])
        if not isinstance(items, list):
            raise LockfileError(f"{self.file}: '{kind}' must be an array of tables ([[{kind}]])")
        for i, t in enumerate(items):
            if not isinstance(t, dict):
                raise LockfileError(f"{self.file}: {kind} #{i + 1} must be a table")
            label = str(t["name"]) if isinstance(t.get("name"), str) else f"#{i + 1}"
            label = label if label.isprintable() else label.encode("unicode_escape").decode()
            where = f"{kind} '{label}'"
            obj = make(self, t, where)
            names = self.seen.setdefault(f"{kind}/{scope(t) if scope else ''}", set())
            if obj.name in names:
                raise LockfileError(f"{self.file}: {where}: duplicate name")
            names.add(obj.name)
            yield obj

    def unknown(self, t: dict[str, Any], where: str, allowed: set[str]) -> None:
        extra = sorted(set(t) - allowed)
        if extra:
            raise LockfileError(f"{self.file}: {where}: unknown field '{extra[0]}'")

    def string(
        self,
        t: dict[str, Any],
        where: str,
        key: str,
        *,
        pattern: re.Pattern[str] | None = None,
        what: str = "",
        optional: bool = False,
    ) -> str | None:
        value = t.get(key)
        if value is None or value == "":
            if optional:
                return None
            raise LockfileError(f"{self.file}: {where}: {key} is missing")
        if not isinstance(value, str):
            raise LockfileError(f"{self.file}: {where}: {key} must be a string")
        if pattern is not None and not pattern.fullmatch(value):
            raise LockfileError(
                f"{self.file}: {where}: {key} must be {what or 'a safe name'}, not {redact(repr(value))}"
            )
        return value

    def required(
        self, t: dict[str, Any], where: str, key: str, *, pattern: re.Pattern[str] | None = None,
        what: str = "",
    ) -> str:
        value = self.string(t, where, key, pattern=pattern, what=what)
        assert value is not None
        return value

    def name(self, t: dict[str, Any], where: str) -> str:
        value = self.string(t, where, "name", pattern=_NAME,
                            what="letters, digits and ._+- (no '/' or '..')")
        assert value is not None
        return value

    def sha256(self, t: dict[str, Any], where: str, *, optional: bool) -> str | None:
        value = self.string(t, where, "sha256", optional=optional)
        if value is not None and not _HEX64.fullmatch(value):
            raise LockfileError(f"{self.file}: {where}: sha256 must be 64 hex digits")
        return value

    def url(self, t: dict[str, Any], where: str, key: str, *, optional: bool = False) -> Any:
        value = self.string(t, where, key, optional=optional)
        if value is None:
            return None
        why = problem(value)
        if why is not None:
            raise LockfileError(f"{self.file}: {where}: {key} {why}, not {redact(repr(value))}")
        return value

    def size(self, t: dict[str, Any], where: str) -> int | None:
        value = t.get("size")
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise LockfileError(f"{self.file}: {where}: size must be a whole number of bytes, not {value!r}")
        return value
