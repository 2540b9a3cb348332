"""Test helper: fetch Debian packages by name, resolved from a suite's Packages index.

``fetch_debs(["libc6", "libc6-dev"], cache)`` reads
``dists/<suite>/main/binary-amd64/Packages.xz`` for the current file names and sha256s,
downloads each ``.deb`` once into ``cache`` (checked against the index) and returns the
paths. The index is re-read when a pool file has gone (a point release replaced it).
"""

from __future__ import annotations

import hashlib
import lzma
import os
import time
from pathlib import Path

import requests

MIRROR = os.environ.get("COMPATBUILD_DEBIAN_MIRROR", "http://deb.debian.org/debian")
INDEX_MAX_AGE = 7 * 24 * 3600


class DebNotFound(Exception):
    pass


def _index(cache: Path, suite: str, *, refresh: bool = False) -> dict[str, dict[str, str]]:
    path = cache / f"{suite}-Packages.xz"
    stale = not path.is_file() or time.time() - path.stat().st_mtime > INDEX_MAX_AGE
    if refresh or stale:
        _download(f"{MIRROR}/dists/{suite}/main/binary-amd64/Packages.xz", path, None)
    packages: dict[str, dict[str, str]] = {}
    for stanza in lzma.decompress(path.read_bytes()).decode("utf-8", "replace").split("\n\n"):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line[:1] not in (" ", "\t") and ":" in line:
                key, _, value = line.partition(":")
                fields[key] = value.strip()
        if "Package" in fields and fields.get("Architecture") in ("amd64", "all"):
            packages.setdefault(fields["Package"], fields)
    return packages


def _download(url: str, dest: Path, sha256: str | None) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    h = hashlib.sha256()
    with requests.get(url, stream=True, timeout=(10, 120)) as response:
        if response.status_code == 404:
            raise DebNotFound(url)
        response.raise_for_status()
        with part.open("wb") as out:
            for chunk in response.iter_content(1 << 16):
                h.update(chunk)
                out.write(chunk)
    if sha256 and h.hexdigest() != sha256:
        part.unlink()
        raise AssertionError(f"{url}: sha256 {h.hexdigest()}, index says {sha256}")
    os.replace(part, dest)


def fetch_debs(names: list[str], cache: Path, *, suite: str = "bullseye") -> list[Path]:
    """Download (once) the current ``suite`` amd64 packages ``names``; return their paths."""
    index = _index(cache, suite)
    paths: list[Path] = []
    for name in names:
        for attempt in (0, 1):
            entry = index.get(name)
            if entry is None:
                raise AssertionError(f"{suite} has no package {name}")
            dest = cache / Path(entry["Filename"]).name
            if dest.is_file():
                break
            try:
                _download(f"{MIRROR}/{entry['Filename']}", dest, entry.get("SHA256"))
                break
            except DebNotFound:
                if attempt:
                    raise
                index = _index(cache, suite, refresh=True)
        paths.append(dest)
    return paths
