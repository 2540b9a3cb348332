"""The lockfile's data: frozen dataclasses for what ``rsrc.lock.toml`` pins, and its constants.

:mod:`tasks.inputs.lockfile` reads and validates the file into these; every other module
takes them as arguments. Split from the parser so each reads as one thing: the model here,
the field checks in :mod:`tasks.inputs.lockcheck`, the schema in :mod:`tasks.inputs.lockfile`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

from tasks.arches import ARCHES as _ARCHES
from tasks.errors import LockfileError
from tasks.settings import DOWNLOAD_MAX as DOWNLOAD_MAX  # the cap for a file without a pinned size

SCHEMA_VERSION = 2
SCHEMAS = (1, 2)
LINKERS = ("llvm", "rust-lld")  # how the builder image links: docker/builder, docker/builder-rust-lld
ARCHES = tuple(_ARCHES)  # what a target's `arch` may be: tasks/arches.py
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
    cross_from: str = ""  # the x86_64 target whose builder image cross-links for this arch (docker)


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
        (signatures, checksum lists) get a small one. None for a pinned file without a size:
        the download cap (config ``compatbuild.max_download``, :data:`DOWNLOAD_MAX`) applies."""
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
