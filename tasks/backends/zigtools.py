"""The zig backend's tools: cargo-zigbuild and zig, unpacked from their pinned PyPI wheels.

Both wheels are ``[[artifact]]`` entries of the lockfile, fetched and sha256-checked by the
normal download/verify path (:func:`tasks.pipeline.inputs_ready`); this module only
unpacks them, each into its own ``<cache>/zig/<name>-<sha256 prefix>/`` through
:func:`tasks.atomic.ensure_dir`, and never into a Python environment. While unpacking,
every file is checked against the wheel's own ``RECORD`` (sha256 per file) and its
:func:`tasks.store.identity` (size, mtime, ctime, inode, device, as verify's stamps key a
file) is written to a manifest; each later use stats every file against that manifest and
re-hashes any whose identity changed, so a deleted or edited file in the cache (one put
back to its old size and mtime included) is a one-line :class:`~tasks.errors.ZigError`
instead of a strange compiler failure, or a replaced tool that runs.

The glibc versions the pinned zig can target are read from its own
``lib/libc/glibc/abilists``.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import os
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from tasks.atomic import ensure_dir
from tasks.errors import NotDownloaded, OutputError, ZigError, ZigTargetError
from tasks.inputs.lockfile import Artifact, Lockfile
from tasks.store import Store, identity, sha256_file

ARTIFACTS = ("cargo-zigbuild", "ziglang")  # the lockfile artifacts the zig backend needs
STAMP = ".compatbuild-wheel.json"
MANIFEST = ".compatbuild-files.json"
MANIFEST_VERSION = 2  # 2: [sha256, *identity]; 1 held size and mtime only (an install of it is remade)
RUST_FLOOR = (2, 17)  # Rust std's own glibc floor on x86_64-unknown-linux-gnu
Log = Callable[[str], None]


@dataclass(frozen=True)
class ZigTools:
    """An installed, checked pair: the cargo-zigbuild and zig executables and their versions."""

    cargo_zigbuild: Path
    zig: Path
    versions: str  # "cargo-zigbuild 0.24.1, ziglang 0.17.1"
    glibcs: tuple[str, ...]  # what this zig can target, oldest first

    def check_glibc(self, glibc: str) -> None:
        """ZigTargetError unless this zig (and Rust std) can target ``glibc``."""
        if glibc not in self.glibcs:
            raise ZigTargetError(f"the pinned zig ({self.versions}) cannot target glibc {glibc}: it knows "
                                 f"{self.glibcs[0]} to {self.glibcs[-1]}; use --backend docker")
        if _version(glibc) < RUST_FLOOR:
            raise ZigTargetError(f"glibc {glibc} is below Rust std's floor of "
                                 f"{'.'.join(map(str, RUST_FLOOR))}; no Rust cdylib can target it")


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split("."))


def install(lock: Lockfile, store: Store, cache: Path, *, log: Log = print) -> ZigTools:
    """Unpack the pinned wheels (already downloaded and verified) into ``cache``/zig; check them."""
    roots: dict[str, Path] = {}
    versions = []
    for name in ARTIFACTS:
        artifact = lock.artifact(name)
        roots[name] = install_wheel(artifact, store, cache, log=log)
        versions.append(f"{name} {_wheel_version(artifact.filename)}")
    scripts = list(roots["cargo-zigbuild"].glob("*.data/scripts/cargo-zigbuild"))
    zig = roots["ziglang"] / "ziglang" / "zig"
    if not scripts or not zig.is_file():
        raise ZigError(f"the pinned wheels hold no cargo-zigbuild or ziglang/zig ({', '.join(versions)})")
    for exe, root in ((scripts[0], roots["cargo-zigbuild"]), (zig, roots["ziglang"])):
        if not os.access(exe, os.X_OK):  # its bytes are the wheel's, but cargo-zigbuild could not run it
            raise ZigError(f"zig in the cache cannot be run: {exe} is not executable; "
                           f"remove {root} and run again to reinstall it")
    abilists = roots["ziglang"] / "ziglang" / "lib" / "libc" / "glibc" / "abilists"
    return ZigTools(scripts[0], zig, ", ".join(versions), glibc_versions(abilists.read_bytes()))


def install_wheel(artifact: Artifact, store: Store, cache: Path, *, log: Log = print) -> Path:
    """One pinned wheel (downloaded and verified) unpacked into ``<cache>/zig/<name>-<sha>``, checked."""
    wheel = store.path(artifact.sha256)
    if not wheel.is_file():
        raise NotDownloaded(f"artifact {artifact.name} ({artifact.filename}) is not in the cache; "
                            "run `invoke download`")
    dest = cache / "zig" / f"{artifact.name}-{artifact.sha256[:16]}"
    filename = artifact.filename

    def fill(tmp: Path) -> None:
        _unpack(wheel, tmp, filename)

    try:
        ensure_dir(dest, {"wheel": filename, "sha256": artifact.sha256, "manifest": MANIFEST_VERSION},
                   fill, stamp_name=STAMP,
                   before=lambda: log(f"Installing {filename} into {dest}"))
    except OSError as exc:
        raise OutputError(f"cannot install {filename} into {dest}: {exc.strerror or exc}") from None
    check_install(dest)
    return dest


def _wheel_version(filename: str) -> str:
    parts = filename.split("-")
    return parts[1] if len(parts) > 1 else "?"


def _record_hash(value: str) -> str:
    """A RECORD hash (``sha256=<urlsafe base64, unpadded>``) as hex; "" when there is none."""
    algo, _, digest = value.partition("=")
    if algo != "sha256" or not digest:
        return ""
    return base64.urlsafe_b64decode(digest + "=" * (-len(digest) % 4)).hex()


def _unpack(wheel: Path, tmp: Path, label: str) -> None:
    """Extract ``wheel`` into ``tmp``, each file checked against RECORD; write the manifest."""
    manifest: dict[str, list[object]] = {}
    with zipfile.ZipFile(wheel) as z:
        records = [n for n in z.namelist() if n.endswith(".dist-info/RECORD")]
        if len(records) != 1:
            raise ZigError(f"{label}: not a wheel (no single .dist-info/RECORD)")
        expected = {row[0]: _record_hash(row[1]) for row in csv.reader(io.StringIO(z.read(records[0]).decode()))
                    if len(row) >= 2}
        for info in z.infolist():
            if info.is_dir():
                continue
            parts = PurePosixPath(info.filename).parts
            if info.filename.startswith("/") or ".." in parts:
                raise ZigError(f"{label}: member {info.filename!r} points outside its folder")
            path = tmp.joinpath(*parts)
            path.parent.mkdir(parents=True, exist_ok=True)
            h = hashlib.sha256()
            with z.open(info) as src, path.open("wb") as out:
                while chunk := src.read(1 << 20):
                    h.update(chunk)
                    out.write(chunk)
            want = expected.get(info.filename, "")
            if want and h.hexdigest() != want:
                raise ZigError(f"{label}: {info.filename} does not match the wheel's RECORD")
            path.chmod(0o755 if (info.external_attr >> 16) & 0o111 else 0o644)
            manifest[info.filename] = [h.hexdigest(), *identity(path.stat())]
    (tmp / MANIFEST).write_text(json.dumps(manifest, sort_keys=True))


def check_install(root: Path) -> None:
    """ZigError unless every file of the install is there and has its recorded bytes.

    A file whose :func:`~tasks.store.identity` matches the manifest is taken as unchanged (a
    stat each); any other is hashed and compared with the sha256 recorded from the wheel's RECORD.
    """
    try:
        manifest = json.loads((root / MANIFEST).read_text())
    except (OSError, ValueError):
        raise ZigError(f"zig in the cache is incomplete: {root} has no {MANIFEST}; "
                       f"remove {root} and run again to reinstall it") from None
    prefix = f"{root}/"
    for name, entry in manifest.items():
        sha, key = (entry[0], entry[1:]) if isinstance(entry, list) and entry else ("", [])
        try:
            st = os.stat(prefix + name)  # a plain stat per file: ~20k of them for zig
        except OSError:
            raise ZigError(f"zig in the cache is missing {prefix + name}; remove {root} and run again "
                           "to reinstall it") from None
        if key == identity(st):
            continue
        path = Path(prefix + name)
        got = sha256_file(path)
        if got != sha:
            raise ZigError(f"zig in the cache is corrupt: {path} has sha256 {got[:16]}…, "
                           f"its wheel says {str(sha)[:16]}…; remove {root} and run again to reinstall it")


def glibc_versions(abilists: bytes) -> tuple[str, ...]:
    """The glibc versions in zig's ``abilists``: library names, then a count and (major, minor, patch)s."""
    try:
        i = 1
        for _ in range(abilists[0]):
            i = abilists.index(0, i) + 1
        count = abilists[i]
        found = []
        for k in range(count):
            major, minor, patch = abilists[i + 1 + 3 * k: i + 4 + 3 * k]
            found.append(f"{major}.{minor}" + (f".{patch}" if patch else ""))
    except (IndexError, ValueError):
        raise ZigError("zig's lib/libc/glibc/abilists is unreadable") from None
    return tuple(found)

