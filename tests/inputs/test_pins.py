"""tasks.inputs.pins: recording key hashes and refreshing the Rust pin, on a copy of the real lockfile."""

from __future__ import annotations

import difflib
import hashlib
import os
import stat
import threading
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer

from tasks.atomic import lock_for
from tasks.errors import CompatError, SignatureError
from tasks.inputs.lockfile import load
from tasks.inputs.pins import record_unpinned, refresh_rust
from tasks.inputs.verify import verify_all
from tasks.settings import PROJECT_ROOT
from tasks.store import Store
from tests.support.gpgkeys import Keys, TestKey, put, write_lock

REAL_LOCK = PROJECT_ROOT / "rsrc.lock.toml"
RUST_FPR = "108F66205EAEB0AAA8DD5E1C85AB96E6FA1BE5FE"
RUST_KEY_URL = "https://static.rust-lang.org/rust-key.gpg.ascii"
RUST_URL = "https://static.rust-lang.org/dist/rust-1.90.0-x86_64-unknown-linux-gnu.tar.gz"
RUST_SHA = "e453bae1c68d02fe2eae065c5452d5731308164cd154154c6ee442d2fa590685"
TRIPLE = "x86_64-unknown-linux-gnu"


@pytest.fixture
def lock_copy(tmp_path: Path, keys: Keys) -> Path:
    """The real lockfile, with the test key standing in for Rust's."""
    text = REAL_LOCK.read_text()
    assert text.count(RUST_FPR) == 1
    path = tmp_path / "rsrc.lock.toml"
    path.write_text(text.replace(RUST_FPR, keys.main.fingerprint))
    return path


def cache_rust(tmp_path: Path, store: Store, keys: Keys, lock_path: Path) -> str:
    """Cache a stand-in rust tarball, its signature and the key file; pin the tarball."""
    data = b"stand-in rust installer"
    sha = put(store, data)
    src = tmp_path / "rust.tar.gz"
    src.write_bytes(data)
    put(store, keys.ring.sign(keys.main, src, tmp_path / "rust.asc").read_bytes(),
        RUST_URL + ".asc")
    put(store, keys.main.public, RUST_KEY_URL)
    lock_path.write_text(lock_path.read_text().replace(RUST_SHA, sha))
    return sha


# ------------------------------------------------------------------ record_unpinned

def test_record_unpinned_writes_the_key_hash_and_keeps_the_layout(
        tmp_path: Path, store: Store, keys: Keys, lock_copy: Path) -> None:
    cache_rust(tmp_path, store, keys, lock_copy)
    verify_all(load(lock_copy), store, only="rust", log=lambda _: None)
    lock_copy.chmod(0o600)
    before = lock_copy.read_text()
    key_sha = hashlib.sha256(keys.main.public).hexdigest()
    log: list[str] = []
    assert record_unpinned(lock_copy, store, log.append) == ["rust"]
    assert stat.S_IMODE(lock_copy.stat().st_mode) == 0o600  # `invoke lock` made it 0644
    assert log == [f"Recorded sha256 of key 'rust' (first verified fetch): {key_sha}"]
    after = lock_copy.read_text()
    added = [d for d in difflib.ndiff(before.splitlines(), after.splitlines())
             if d.startswith(("+ ", "- "))]
    assert added == [f'+ sha256 = "{key_sha}"']
    lines = after.splitlines()
    assert lines[lines.index(f'url = "{RUST_KEY_URL}"') + 1] == f'sha256 = "{key_sha}"'
    assert "# Brad King, 4096R/7BFB4EDA, signs CMake's SHA-256 lists." in after
    assert load(lock_copy).key("rust").sha256 == key_sha
    # Pinned now: a second run records nothing, and says nothing.
    log.clear()
    assert record_unpinned(lock_copy, store, log.append) == []
    assert log == [] and lock_copy.read_text() == after
    # The newly pinned key file still verifies.
    assert verify_all(load(lock_copy), store, only="rust", log=log.append)[0].artifact == "rust"


def test_record_unpinned_waits_for_the_lockfile_lock(
        tmp_path: Path, store: Store, keys: Keys, lock_copy: Path) -> None:
    """The lock `invoke rpms --refresh` takes too: the two never write over each other."""
    cache_rust(tmp_path, store, keys, lock_copy)
    verify_all(load(lock_copy), store, only="rust", log=lambda _: None)
    outcome: list[object] = []
    with lock_for(lock_copy):
        worker = threading.Thread(target=lambda: outcome.append(
            record_unpinned(lock_copy, store, lambda _: None)))
        worker.start()
        worker.join(timeout=1.0)
        assert worker.is_alive() and load(lock_copy).key("rust").sha256 is None
    worker.join(timeout=30)
    assert outcome == [["rust"]] and load(lock_copy).key("rust").sha256


def test_record_unpinned_skips_a_key_that_signs_nothing(tmp_path: Path, store: Store,
                                                        keys: Keys) -> None:
    put(store, keys.main.public, RUST_KEY_URL)
    key = {"name": "spare", "url": RUST_KEY_URL, "fingerprints": [keys.main.fingerprint]}
    path = write_lock(tmp_path / "l.toml", keys=[key], artifacts=[])
    before = path.read_text()
    assert record_unpinned(path, store, lambda _: None) == []
    assert path.read_text() == before


def test_record_unpinned_leaves_a_key_whose_artifacts_are_not_downloaded(
        tmp_path: Path, store: Store, keys: Keys, lock_copy: Path) -> None:
    put(store, keys.main.public, "https://releases.llvm.org/5.0.2/tstellar-gpg-key.asc")
    before = lock_copy.read_text()
    assert record_unpinned(lock_copy, store, lambda _: None) == []
    assert lock_copy.read_text() == before


def test_record_unpinned_refuses_a_key_whose_signature_fails(
        tmp_path: Path, store: Store, keys: Keys, lock_copy: Path) -> None:
    cache_rust(tmp_path, store, keys, lock_copy)
    put(store, keys.other.public, RUST_KEY_URL)  # a key file that did not sign the tarball
    before = lock_copy.read_text()
    with pytest.raises(SignatureError):
        record_unpinned(lock_copy, store, lambda _: None)
    assert lock_copy.read_text() == before


# ------------------------------------------------------------------ refresh_rust

def manifest(base: str, sha: str, *, available: bool = True) -> bytes:
    return f"""manifest-version = "2"
date = "2025-10-30"

[pkg.rust]
version = "1.91.0 (f8297e351 2025-10-28)"

[pkg.rust.target.{TRIPLE}]
available = {str(available).lower()}
url = "{base}/dist/2025-10-30/rust-1.91.0-{TRIPLE}.tar.gz"
hash = "{sha}"
xz_url = "{base}/dist/2025-10-30/rust-1.91.0-{TRIPLE}.tar.xz"
xz_hash = "{'e' * 64}"

[pkg.rust.target.aarch64-unknown-linux-gnu]
available = true
url = "{base}/dist/2025-10-30/rust-1.91.0-aarch64-unknown-linux-gnu.tar.gz"
hash = "{'a' * 64}"
""".encode()


def serve_channel(httpserver: HTTPServer, tmp_path: Path, keys: Keys, signer: TestKey,
                  body: bytes, *, signed: bytes | None = None) -> None:
    src = tmp_path / "channel.toml"
    src.write_bytes(body if signed is None else signed)
    sig = keys.ring.sign(signer, src, tmp_path / "channel.toml.asc").read_bytes()
    httpserver.expect_request("/dist/channel-rust-1.91.0.toml").respond_with_data(body)
    httpserver.expect_request("/dist/channel-rust-1.91.0.toml.asc").respond_with_data(sig)


def fetcher(httpserver: HTTPServer, tmp_path: Path) -> Callable[[str], Path]:
    """What the task layer passes: URL -> local file (static.rust-lang.org mirrored locally)."""
    def fetch(url: str) -> Path:
        url = url.replace("https://static.rust-lang.org/", httpserver.url_for("/"))
        out = tmp_path / "fetched" / url.rsplit("/", 1)[-1]
        out.parent.mkdir(exist_ok=True)
        with urllib.request.urlopen(url, timeout=10) as r:  # noqa: S310 (loopback)
            out.write_bytes(r.read())
        return out
    return fetch


def test_refresh_rust_pins_the_signed_manifest_hash(
        tmp_path: Path, store: Store, keys: Keys, lock_copy: Path, httpserver: HTTPServer) -> None:
    put(store, keys.main.public, RUST_KEY_URL)
    base = httpserver.url_for("/").rstrip("/")
    new_sha = "5" * 64
    serve_channel(httpserver, tmp_path, keys, keys.main, manifest(base, new_sha))
    before = lock_copy.read_text()
    log: list[str] = []
    got = refresh_rust(lock_copy, store, version="1.91.0", fetch=fetcher(httpserver, tmp_path),
                       dist_root=f"{base}/dist", log=log.append)
    assert got == new_sha
    rust = load(lock_copy).artifact("rust")
    new_url = f"{base}/dist/2025-10-30/rust-1.91.0-{TRIPLE}.tar.gz"
    assert (rust.url, rust.sha256, rust.signature_url) == (new_url, new_sha, new_url + ".asc")
    after = lock_copy.read_text()
    changed = [d for d in difflib.ndiff(before.splitlines(), after.splitlines())
               if d.startswith(("+ ", "- "))]
    assert len(changed) == 6  # url, sha256, signature_url: nothing else moved
    assert "# Rust 1.90.0: the oldest release that builds edition-2024 crates" in after
    assert log[0] == (f"Pinned artifact 'rust' to channel-rust-1.91.0.toml "
                      f"(signature by {keys.main.fingerprint}):")
    assert f"  sha256: {RUST_SHA} -> {new_sha}" in log
    # Same manifest again: nothing to change, nothing said.
    log.clear()
    assert refresh_rust(lock_copy, store, version="1.91.0", fetch=fetcher(httpserver, tmp_path),
                        dist_root=f"{base}/dist", log=log.append) == new_sha
    assert log == [] and lock_copy.read_text() == after


def test_refresh_rust_fetches_the_key_when_it_is_not_cached(
        tmp_path: Path, store: Store, keys: Keys, lock_copy: Path, httpserver: HTTPServer) -> None:
    base = httpserver.url_for("/").rstrip("/")
    serve_channel(httpserver, tmp_path, keys, keys.main, manifest(base, "6" * 64))
    httpserver.expect_request("/rust-key.gpg.ascii").respond_with_data(keys.main.public)
    assert refresh_rust(lock_copy, store, version="1.91.0", fetch=fetcher(httpserver, tmp_path),
                        dist_root=f"{base}/dist", log=lambda _: None) == "6" * 64


@pytest.mark.parametrize("case", ["wrong key", "altered manifest"])
def test_refresh_rust_rejects_a_manifest_not_signed_by_the_pinned_key(
        tmp_path: Path, store: Store, keys: Keys, lock_copy: Path, httpserver: HTTPServer,
        case: str) -> None:
    put(store, keys.main.public + keys.other.public, RUST_KEY_URL)
    base = httpserver.url_for("/").rstrip("/")
    body = manifest(base, "7" * 64)
    if case == "wrong key":
        serve_channel(httpserver, tmp_path, keys, keys.other, body)
        expected = f"signed by {keys.other.fingerprint}, lockfile accepts {keys.main.fingerprint}"
    else:
        serve_channel(httpserver, tmp_path, keys, keys.main, body,
                      signed=manifest(base, "8" * 64))
        expected = "BAD signature"
    before = lock_copy.read_text()
    with pytest.raises(SignatureError, match=f"channel-rust-1.91.0.toml.asc: {expected}"):
        refresh_rust(lock_copy, store, version="1.91.0", fetch=fetcher(httpserver, tmp_path),
                     dist_root=f"{base}/dist", log=lambda _: None)
    assert lock_copy.read_text() == before


def test_refresh_rust_rejects_an_unavailable_target(
        tmp_path: Path, store: Store, keys: Keys, lock_copy: Path, httpserver: HTTPServer) -> None:
    put(store, keys.main.public, RUST_KEY_URL)
    base = httpserver.url_for("/").rstrip("/")
    serve_channel(httpserver, tmp_path, keys, keys.main,
                  manifest(base, "9" * 64, available=False))
    with pytest.raises(CompatError, match=f"rust is not available for {TRIPLE}"):
        refresh_rust(lock_copy, store, version="1.91.0", fetch=fetcher(httpserver, tmp_path),
                     dist_root=f"{base}/dist", log=lambda _: None)


# ------------------------------------------------------------------ online

@pytest.mark.online
@pytest.mark.skipif(os.environ.get("COMPATBUILD_ONLINE") != "1",
                    reason="needs static.rust-lang.org; set COMPATBUILD_ONLINE=1")
def test_real_rust_manifest_confirms_the_pinned_hash(tmp_path: Path) -> None:
    """The real channel-rust-1.90.0.toml, checked against rust-key.gpg.ascii by fingerprint."""
    copy = tmp_path / "rsrc.lock.toml"
    copy.write_text(REAL_LOCK.read_text())

    def fetch(url: str) -> Path:
        out = tmp_path / url.rsplit("/", 1)[-1]
        with urllib.request.urlopen(url, timeout=60) as r:  # noqa: S310 (fixed https URLs)
            out.write_bytes(r.read())
        return out

    store = Store(tmp_path / "cache")
    got = refresh_rust(copy, store, version="1.90.0", fetch=fetch, log=lambda _: None)
    assert got == load(REAL_LOCK).artifact("rust").sha256
