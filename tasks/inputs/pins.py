"""``invoke lock``: write new pins into the lockfile, keeping its comments and layout.

Two edits, both only after a signature check and both written by
:func:`tasks.inputs.lockwrite.rewrite` (under the lockfile's lock, comments and mode kept):
recording the sha256 of a key file on its first verified use, and moving the Rust pin to
another release from its signed channel manifest.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from tasks.errors import HashMismatch, NotDownloaded, PinError
from tasks.inputs.lockfile import Artifact, Lockfile, load, url_basename
from tasks.inputs.lockwrite import rewrite
from tasks.inputs.verify import check_signature, key_file, verify_artifact
from tasks.store import Store, sha256_file

if TYPE_CHECKING:  # tomlkit is imported where it is used
    import tomlkit
    from tomlkit.items import Table

_HEX64 = re.compile(r"[0-9a-f]{64}")
_VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9.-]*")

Log = Callable[[str], None]


def record_unpinned(lock_path: Path, store: Store, log: Log = print) -> list[str]:
    """Pin the sha256 of each unpinned key file that has verified a signature; return their names.

    Call after ``verify_all`` succeeded: each key is re-checked through ``verify_artifact``
    on the downloaded artifacts it signs (a stamp from that run answers at once); a failure
    raises, and a key with nothing downloaded to verify is left unpinned.
    """
    lock = load(lock_path)
    found: dict[str, str] = {}
    for key in lock.keys:
        sha = None if key.sha256 else store.url_hash(key.url)
        signed = [a for a in lock.artifacts if a.key == key.name and _downloaded(a, store)]
        if sha is None or not signed:
            continue
        for artifact in signed:
            verify_artifact(lock, artifact, store)
        found[key.name] = sha
    if not found:
        return []

    def edit(doc: tomlkit.TOMLDocument) -> None:
        for table in _tables(doc, "key"):
            if table.get("name") in found and not table.get("sha256"):
                _set(table, "sha256", found[str(table["name"])], after="url")

    rewrite(lock_path, edit)
    for name, sha in found.items():
        log(f"Recorded sha256 of key '{name}' (first verified fetch): {sha}")
    return list(found)


def record_sizes(lock_path: Path, store: Store, log: Log = print) -> int:
    """Pin the ``size`` of every pinned file whose verified bytes are in the store; return how many.

    Call after ``download`` and ``verify`` succeeded: a file is in the store under its sha256
    only once its hash matched, so its length is the pinned file's. From then on a download
    refuses a ``Content-Length`` above it, and stops a longer body there.
    """
    import tomlkit

    found: dict[tuple[str, str], int] = {}
    for kind in ("artifact", "key", "rpm"):
        for table in _tables(tomlkit.parse(lock_path.read_text(encoding="utf-8-sig")), kind):
            sha = table.get("sha256")
            if isinstance(sha, str) and "size" not in table and store.has(sha):
                found[(kind, sha)] = store.path(sha).stat().st_size
    if not found:
        return 0

    def edit(doc: tomlkit.TOMLDocument) -> None:
        for kind in ("artifact", "key", "rpm"):
            for table in _tables(doc, kind):
                size = found.get((kind, str(table.get("sha256"))))
                if size is not None and "size" not in table:
                    _set(table, "size", size, after="sha256")

    rewrite(lock_path, edit)
    log(f"Recorded the size of {len(found)} pinned file{'s' * (len(found) != 1)} (refused above it from now on)")
    return len(found)


def refresh_rust(lock_path: Path, store: Store, *, version: str, fetch: Callable[[str], Path],
                 triple: str = "x86_64-unknown-linux-gnu",
                 dist_root: str = "https://static.rust-lang.org/dist",
                 log: Log = print) -> str:
    """Pin artifact 'rust' to ``version`` from its signed channel manifest; return the sha256."""
    if not _VERSION.fullmatch(version):
        raise PinError(f"not a Rust version or channel: {version!r}")
    lock = load(lock_path)
    key, artifact = lock.key("rust"), lock.artifact("rust")
    key_path = _rust_key(lock, store, fetch)
    name = f"channel-rust-{version}.toml"
    url = f"{dist_root.rstrip('/')}/{name}"
    manifest, signature = fetch(url), fetch(url + ".asc")
    fpr, note = check_signature(signature, manifest, [key_path], key.fingerprints,
                                what=f"{name}.asc", keys_label=f"'rust' ({url_basename(key.url)})")
    pkg = _target(manifest, name, triple)
    new = {"url": pkg["url"], "sha256": pkg["hash"], "signature_url": pkg["url"] + ".asc"}
    old = {"url": artifact.url, "sha256": artifact.sha256,
           "signature_url": artifact.signature_url or ""}
    changed = [k for k in new if new[k] != old[k]]
    if not changed and not artifact.alt_urls:
        return new["sha256"]

    def edit(doc: tomlkit.TOMLDocument) -> None:
        for table in _tables(doc, "artifact"):
            if table.get("name") == "rust":
                for k in changed:
                    _set(table, k, new[k], after="sha256" if k == "signature_url" else "url")
                if "filename" in table:
                    _set(table, "filename", url_basename(new["url"]), after="url")
                if "alt_urls" in table:
                    del table["alt_urls"]  # they named the old release

    rewrite(lock_path, edit)
    extra = f"; {note}" if note else ""
    log(f"Pinned artifact 'rust' to {name} (signature by {fpr}{extra}):")
    for k in changed:
        log(f"  {k}: {old[k] or '(none)'} -> {new[k]}")
    if artifact.alt_urls:
        log(f"  alt_urls: removed {', '.join(artifact.alt_urls)}")
    return new["sha256"]


def _downloaded(artifact: Artifact, store: Store) -> bool:
    """Whether an artifact, its signature and its checksum files are all in the store."""
    aux = [artifact.signature_url, artifact.checksums_url, artifact.checksums_signature_url]
    urls = [u for u in aux if u]
    return bool(urls) and store.has(artifact.sha256) and all(store.url_hash(u) for u in urls)


def _rust_key(lock: Lockfile, store: Store, fetch: Callable[[str], Path]) -> Path:
    """The 'rust' key file: from the store, else fetched and checked against its pin."""
    key = lock.key("rust")
    try:
        path, sha = key_file(key, store)
    except NotDownloaded:
        path, sha = fetch(key.url), key.sha256 or ""
    got = sha256_file(path)
    if sha and got != sha:
        raise HashMismatch(f"key 'rust': {url_basename(key.url)} has sha256 {got}, expected {sha}")
    return path


def _target(manifest: Path, name: str, triple: str) -> dict[str, str]:
    try:
        data = tomllib.loads(manifest.read_text(encoding="utf-8"))
        pkg = data["pkg"]["rust"]["target"][triple]
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, KeyError, TypeError) as exc:
        raise PinError(f"{name}: no [pkg.rust.target.{triple}] ({exc})") from None
    if not isinstance(pkg, dict) or pkg.get("available") is not True:
        raise PinError(f"{name}: rust is not available for {triple}")
    for url_key, hash_key in (("url", "hash"), ("xz_url", "xz_hash")):
        if url_key == "url" or url_key in pkg:
            if not isinstance(pkg.get(url_key), str) or not _HEX64.fullmatch(str(pkg.get(hash_key))):
                raise PinError(f"{name}: [pkg.rust.target.{triple}] has no valid "
                                  f"{url_key}/{hash_key}")
    return {"url": pkg["url"], "hash": pkg["hash"]}


def _tables(doc: tomlkit.TOMLDocument, kind: str) -> list[Table]:
    from tomlkit.items import Table

    items = doc.get(kind, [])
    return [t for t in items if isinstance(t, Table)]


def _set(table: Table, key: str, value: str | int, *, after: str) -> None:
    """Set ``key``, keeping an existing value's comment, or add it on the line after ``after``."""
    import tomlkit
    from tomlkit.items import Item

    new = tomlkit.item(value)
    if key in table:
        old = table.item(key)
        if isinstance(old, Item):
            new.trivia.comment_ws, new.trivia.comment = old.trivia.comment_ws, old.trivia.comment
        table[key] = new
    elif after in table:  # the keys after it taken out and put back after the new one: public API only
        keys = list(table.keys())
        tail = [(k, table.item(k)) for k in keys[keys.index(after) + 1:]]
        for k, _ in tail:
            table.remove(k)
        table[key] = new
        for k, item in tail:
            table[k] = item
    else:
        table[key] = new
