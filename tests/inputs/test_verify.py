"""tasks.inputs.verify with real ed25519 keys: hashes, signatures, signed checksum lists, stamps."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any

import gnupg
import pytest

from tasks.errors import CompatError, HashMismatch, NotDownloaded, SignatureError
from tasks.inputs import verify
from tasks.inputs.lockfile import Lockfile, load
from tasks.inputs.verify import Verified, listed_hashes, summary, verify_all, verify_artifact
from tasks.store import Store
from tests.support.gpgkeys import AFTER_EXPIRY, BEFORE_EXPIRY, Keys, TestKey, put, write_lock

DIST = "https://example.invalid/dist"
TOOL_URL = f"{DIST}/tool-1.0.tar.gz"
SIG_URL = f"{TOOL_URL}.sig"
KEY_URL = f"{DIST}/upstream-key.asc"
DATA = b"the real tool-1.0 tarball\n"
CMAKE_URL = f"{DIST}/cmake-3.29.3-linux-x86_64.tar.gz"
LIST_URL = f"{DIST}/cmake-3.29.3-SHA-256.txt"
LIST_SIG_URL = f"{LIST_URL}.asc"


def signed_tool(tmp_path: Path, store: Store, keys: Keys, *, signer: TestKey,
                key_file: bytes, fingerprints: list[str], signed: bytes = DATA,
                at: str | None = None, key_sha256: str | None = None,
                with_signature: bool = True) -> Lockfile:
    """Cache DATA, a signature by ``signer`` over ``signed`` and a key file; write a lockfile."""
    sha = put(store, DATA)
    if with_signature:
        src = tmp_path / "signed-input"
        src.write_bytes(signed)
        sig = keys.ring.sign(signer, src, tmp_path / "tool.sig", at=at)
        put(store, sig.read_bytes(), SIG_URL)
    put(store, key_file, KEY_URL)
    key: dict[str, Any] = {"name": "up", "url": KEY_URL, "fingerprints": fingerprints}
    if key_sha256:
        key["sha256"] = key_sha256
    art = {"name": "tool", "url": TOOL_URL, "sha256": sha, "signature_url": SIG_URL, "key": "up"}
    return load(write_lock(tmp_path / "rsrc.lock.toml", keys=[key], artifacts=[art]))


def check(lock: Lockfile, store: Store, name: str = "tool") -> Verified:
    return verify_artifact(lock, lock.artifact(name), store)


# ------------------------------------------------------------------ detached signatures

def test_signature_by_pinned_key_is_accepted_naming_the_fingerprint(
        tmp_path: Path, store: Store, keys: Keys) -> None:
    assert keys.main.signing != keys.main.fingerprint  # signed by a subkey, as Rust's key does
    lock = signed_tool(tmp_path, store, keys, signer=keys.main, key_file=keys.main.public,
                       fingerprints=[keys.main.fingerprint])
    v = check(lock, store)
    assert v == Verified("tool", lock.artifact("tool").sha256,
                         f"signature by {keys.main.fingerprint}", cached=False)


def test_pinning_the_signing_subkey_alone_is_enough(tmp_path: Path, store: Store,
                                                    keys: Keys) -> None:
    lock = signed_tool(tmp_path, store, keys, signer=keys.main, key_file=keys.main.public,
                       fingerprints=[keys.main.signing])
    assert check(lock, store).method == f"signature by {keys.main.signing}"


def test_signature_by_unpinned_key_in_the_key_file_is_rejected(
        tmp_path: Path, store: Store, keys: Keys) -> None:
    lock = signed_tool(tmp_path, store, keys, signer=keys.other,
                       key_file=keys.main.public + keys.other.public,
                       fingerprints=[keys.main.fingerprint])
    with pytest.raises(SignatureError) as err:
        check(lock, store)
    msg = str(err.value)
    assert f"signed by {keys.other.fingerprint}, lockfile accepts {keys.main.fingerprint}" in msg
    assert "artifact 'tool': tool-1.0.tar.gz.sig" in msg
    assert not list((store.root / "verified").iterdir())


def test_signature_by_key_missing_from_the_key_file_is_rejected(
        tmp_path: Path, store: Store, keys: Keys) -> None:
    lock = signed_tool(tmp_path, store, keys, signer=keys.stranger, key_file=keys.main.public,
                       fingerprints=[keys.main.fingerprint])
    with pytest.raises(SignatureError, match=f"signed by key {keys.stranger.fingerprint}, "
                                             "which is not in key file 'up'"):
        check(lock, store)


def test_signature_over_other_bytes_is_a_bad_signature(tmp_path: Path, store: Store,
                                                       keys: Keys) -> None:
    lock = signed_tool(tmp_path, store, keys, signer=keys.main, key_file=keys.main.public,
                       fingerprints=[keys.main.fingerprint], signed=b"what upstream released\n")
    with pytest.raises(SignatureError, match="BAD signature"):
        check(lock, store)


def test_missing_signature_is_rejected(tmp_path: Path, store: Store, keys: Keys) -> None:
    lock = signed_tool(tmp_path, store, keys, signer=keys.main, key_file=keys.main.public,
                       fingerprints=[keys.main.fingerprint], with_signature=False)
    with pytest.raises(SignatureError, match=r"'tool': tool-1\.0\.tar\.gz\.sig is missing"):
        check(lock, store)


def test_signature_file_that_is_not_a_signature_is_rejected(
        tmp_path: Path, store: Store, keys: Keys) -> None:
    lock = signed_tool(tmp_path, store, keys, signer=keys.main, key_file=keys.main.public,
                       fingerprints=[keys.main.fingerprint])
    put(store, b"<html>404 Not Found</html>\n", SIG_URL)
    with pytest.raises(SignatureError, match="is not an OpenPGP signature"):
        check(lock, store)


def test_revoked_key_is_rejected(tmp_path: Path, store: Store, keys: Keys) -> None:
    lock = signed_tool(tmp_path, store, keys, signer=keys.revoked, key_file=keys.revoked.public,
                       fingerprints=[keys.revoked.fingerprint])
    with pytest.raises(SignatureError, match=f"revoked key {keys.revoked.fingerprint}"):
        check(lock, store)


# ------------------------------------------------------------------ expired keys

def test_key_that_expired_after_signing_is_accepted_with_a_note(
        tmp_path: Path, store: Store, keys: Keys) -> None:
    lock = signed_tool(tmp_path, store, keys, signer=keys.expiring,
                       key_file=keys.expiring.public, fingerprints=[keys.expiring.fingerprint],
                       at=BEFORE_EXPIRY)
    v = check(lock, store)
    assert v.method == f"signature by {keys.expiring.fingerprint}"
    assert v.note == "key expired 2021-01-01 after signing (2020-06-01)"
    log: list[str] = []
    verify_all(lock, store, log=log.append)  # cached, and the note survives the stamp
    assert check(lock, store).note == v.note


def test_signature_made_after_the_key_expired_is_rejected(
        tmp_path: Path, store: Store, keys: Keys) -> None:
    lock = signed_tool(tmp_path, store, keys, signer=keys.expiring,
                       key_file=keys.expiring.public, fingerprints=[keys.expiring.fingerprint],
                       at=AFTER_EXPIRY)
    with pytest.raises(SignatureError, match=r"signed 2022-02-01 by [0-9A-F]{40}, whose key "
                                             r"expired 2021-01-01"):
        check(lock, store)


# ------------------------------------------------------------------ hashes

def test_wrong_bytes_raise_hash_mismatch_and_are_moved_aside(
        tmp_path: Path, store: Store, keys: Keys) -> None:
    lock = signed_tool(tmp_path, store, keys, signer=keys.main, key_file=keys.main.public,
                       fingerprints=[keys.main.fingerprint])
    sha = lock.artifact("tool").sha256
    store.path(sha).write_bytes(b"a truncated or swapped tarball")
    with pytest.raises(HashMismatch, match=f"expected {sha}; moved it to"):
        check(lock, store)
    assert not store.path(sha).exists()
    assert [p.read_bytes() for p in (store.root / "quarantine").iterdir()] == \
        [b"a truncated or swapped tarball"]
    with pytest.raises(NotDownloaded, match=r"tool-1\.0\.tar\.gz is not downloaded; "
                                            r"run `invoke download`"):
        check(lock, store)


def test_missing_artifact_says_to_download(tmp_path: Path, store: Store) -> None:
    art = {"name": "tool", "url": TOOL_URL, "sha256": "ab" * 32}
    lock = load(write_lock(tmp_path / "l.toml", keys=[], artifacts=[art]))
    with pytest.raises(CompatError, match="not downloaded; run `invoke download`"):
        check(lock, store)


def test_unsigned_artifact_is_checked_by_sha256(tmp_path: Path, store: Store) -> None:
    sha = put(store, DATA)
    art = {"name": "tool", "url": TOOL_URL, "sha256": sha}
    lock = load(write_lock(tmp_path / "l.toml", keys=[], artifacts=[art]))
    assert check(lock, store) == Verified("tool", sha, "sha256", cached=False)
    assert check(lock, store).cached


def test_key_file_must_match_its_pinned_sha256(tmp_path: Path, store: Store,
                                               keys: Keys) -> None:
    lock = signed_tool(tmp_path, store, keys, signer=keys.main, key_file=keys.main.public,
                       fingerprints=[keys.main.fingerprint], key_sha256="cd" * 32)
    with pytest.raises(HashMismatch, match=f"key 'up': upstream-key.asc has sha256 [0-9a-f]{{64}}, "
                                           f"lockfile pins {'cd' * 32}"):
        check(lock, store)


def test_key_file_matching_its_pin_is_used(tmp_path: Path, store: Store, keys: Keys) -> None:
    sha = put(store, keys.main.public)
    lock = signed_tool(tmp_path, store, keys, signer=keys.main, key_file=keys.main.public,
                       fingerprints=[keys.main.fingerprint], key_sha256=sha)
    assert check(lock, store).method == f"signature by {keys.main.fingerprint}"


# ------------------------------------------------------------------ signed checksum lists

def cmake(tmp_path: Path, store: Store, keys: Keys, listing: str, *,
          signer: TestKey | None = None) -> Lockfile:
    sha = put(store, b"cmake tarball bytes")
    text = listing.format(sha=sha).encode()
    src = tmp_path / "SHA-256.txt"
    src.write_bytes(text)
    put(store, text, LIST_URL)
    sig = keys.ring.sign(signer or keys.main, src, tmp_path / "list.asc")
    put(store, sig.read_bytes(), LIST_SIG_URL)
    put(store, keys.main.public + keys.other.public, KEY_URL)
    key = {"name": "cmake", "url": KEY_URL, "fingerprints": [keys.main.fingerprint]}
    art = {"name": "cmake", "url": CMAKE_URL, "sha256": sha, "checksums_url": LIST_URL,
           "checksums_signature_url": LIST_SIG_URL, "key": "cmake"}
    return load(write_lock(tmp_path / "rsrc.lock.toml", keys=[key], artifacts=[art]))


OTHERS = ("1111111111111111111111111111111111111111111111111111111111111111  cmake-3.29.3.tar.gz\n"
          "2222222222222222222222222222222222222222222222222222222222222222  "
          "cmake-3.29.3-linux-aarch64.tar.gz\n")


@pytest.mark.parametrize("sep", ["  ", " *"])
def test_signed_checksum_list_vouches_for_the_tarball(tmp_path: Path, store: Store, keys: Keys,
                                                      sep: str) -> None:
    listing = OTHERS + "{sha}" + sep + "cmake-3.29.3-linux-x86_64.tar.gz\n"
    lock = cmake(tmp_path, store, keys, listing)
    v = check(lock, store, "cmake")
    assert v.method == f"signed checksum list by {keys.main.fingerprint}"


def test_tarball_missing_from_the_list_fails(tmp_path: Path, store: Store, keys: Keys) -> None:
    # Near misses do not count: the seed's grep for a never-listed name always passed.
    listing = OTHERS + ("{sha}  rsrc/cmake-3.29.3-linux-x86_64.tar.gz\n"
                        "{sha}  cmake-3.29.3-linux-x86_64.tar.gz.sig\n")
    lock = cmake(tmp_path, store, keys, listing)
    with pytest.raises(SignatureError, match=r"cmake-3\.29\.3-linux-x86_64\.tar\.gz is not listed "
                                             r"in cmake-3\.29\.3-SHA-256\.txt"):
        check(lock, store, "cmake")


def test_wrong_tarball_fails_against_the_listed_hash(tmp_path: Path, store: Store,
                                                     keys: Keys) -> None:
    listed = "9" * 64
    lock = cmake(tmp_path, store, keys, OTHERS + listed + "  cmake-3.29.3-linux-x86_64.tar.gz\n")
    with pytest.raises(HashMismatch, match=f"lists sha256 {listed} for cmake-3.29.3-linux-x86_64"):
        check(lock, store, "cmake")


def test_checksum_list_signed_by_unpinned_key_fails(tmp_path: Path, store: Store,
                                                    keys: Keys) -> None:
    lock = cmake(tmp_path, store, keys, "{sha}  cmake-3.29.3-linux-x86_64.tar.gz\n",
                 signer=keys.other)
    with pytest.raises(SignatureError, match=f"cmake-3.29.3-SHA-256.txt.asc: signed by "
                                             f"{keys.other.fingerprint}"):
        check(lock, store, "cmake")


def test_listed_hashes_matches_exact_names_only() -> None:
    text = ("AAAA" * 16 + "  a.tar.gz\r\n" + "bbbb" * 16 + " *a.tar.gz\n"
            + "cccc" * 16 + "  a.tar.gz.sig\n" + "dddd" * 16 + "  x/a.tar.gz\nnot a line\n")
    assert listed_hashes(text, "a.tar.gz") == ["aaaa" * 16, "bbbb" * 16]


# ------------------------------------------------------------------ stamps and verify_all

class NoGpg:
    def __init__(self, *args: object, **kwargs: object) -> None:
        raise AssertionError("gpg must not run for a cached verification")


def no_hashing(path: Path) -> str:
    raise AssertionError(f"{path} must not be re-hashed for a cached verification")


def test_second_run_uses_the_stamp_without_gpg_or_hashing(
        tmp_path: Path, store: Store, keys: Keys, monkeypatch: pytest.MonkeyPatch) -> None:
    lock = signed_tool(tmp_path, store, keys, signer=keys.main, key_file=keys.main.public,
                       fingerprints=[keys.main.fingerprint])
    log: list[str] = []
    (first,) = verify_all(lock, store, log=log.append)
    assert log == [f"Verified tool: signature by {keys.main.fingerprint}"]
    assert first.action == "verified" and summary([first]) == "1 artifact verified (1 fresh, 0 cached)"
    assert len(list((store.root / "verified").iterdir())) == 1
    monkeypatch.setattr(gnupg, "GPG", NoGpg)
    monkeypatch.setattr(verify, "sha256_file", no_hashing)
    log.clear()
    (second,) = verify_all(lock, store, log=log.append)
    assert second.cached and second.method == first.method
    assert log == []  # nothing checked now, nothing said
    assert second.action == "cached" and summary([second]) == "1 artifact verified (0 fresh, 1 cached)"


def test_touched_file_is_verified_again(tmp_path: Path, store: Store, keys: Keys) -> None:
    lock = signed_tool(tmp_path, store, keys, signer=keys.main, key_file=keys.main.public,
                       fingerprints=[keys.main.fingerprint])
    assert not check(lock, store).cached
    assert check(lock, store).cached
    path = store.path(lock.artifact("tool").sha256)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert not check(lock, store).cached


def test_replaced_file_is_verified_again(tmp_path: Path, store: Store, keys: Keys) -> None:
    lock = signed_tool(tmp_path, store, keys, signer=keys.main, key_file=keys.main.public,
                       fingerprints=[keys.main.fingerprint])
    check(lock, store)
    path = store.path(lock.artifact("tool").sha256)
    (tmp_path / "swap").write_bytes(b"same size, other bytes....\n"[: len(DATA)])
    os.replace(tmp_path / "swap", path)
    with pytest.raises(HashMismatch):
        check(lock, store)


def test_replaced_signature_is_verified_again(tmp_path: Path, store: Store,
                                              keys: Keys) -> None:
    lock = signed_tool(tmp_path, store, keys, signer=keys.main,
                       key_file=keys.main.public + keys.other.public,
                       fingerprints=[keys.main.fingerprint])
    check(lock, store)
    src = tmp_path / "again"
    src.write_bytes(DATA)
    put(store, keys.ring.sign(keys.other, src, tmp_path / "other.sig").read_bytes(), SIG_URL)
    with pytest.raises(SignatureError, match=f"signed by {keys.other.fingerprint}"):
        check(lock, store)


def test_changed_fingerprints_are_verified_again(tmp_path: Path, store: Store,
                                                 keys: Keys) -> None:
    lock = signed_tool(tmp_path, store, keys, signer=keys.main, key_file=keys.main.public,
                       fingerprints=[keys.main.fingerprint])
    assert not check(lock, store).cached
    assert check(lock, store).cached
    text = lock.path.read_text()
    lock.path.write_text(text.replace(keys.main.fingerprint, keys.other.fingerprint))
    with pytest.raises(SignatureError, match=f"lockfile accepts {keys.other.fingerprint}"):
        check(load(lock.path), store)


def test_verify_all_reports_every_failure(tmp_path: Path, store: Store) -> None:
    ok = put(store, DATA)
    arts = [{"name": "a", "url": f"{DIST}/a.tgz", "sha256": "aa" * 32},
            {"name": "ok", "url": TOOL_URL, "sha256": ok},
            {"name": "b", "url": f"{DIST}/b.tgz", "sha256": "bb" * 32}]
    lock = load(write_lock(tmp_path / "l.toml", keys=[], artifacts=arts))
    log: list[str] = []
    with pytest.raises(NotDownloaded, match=r"artifact 'a': a\.tgz is not downloaded.*"
                                            r"\(and 1 more\)$"):
        verify_all(lock, store, log=log.append)
    assert log == ["Verified ok: sha256",
                   "Also failed: artifact 'b': b.tgz is not downloaded; run `invoke download`"]
    log.clear()
    assert [v.artifact for v in verify_all(lock, store, only="ok", log=log.append)] == ["ok"]
    assert log == []


def test_gpg_home_is_removed_and_no_agent_is_left(tmp_path: Path, store: Store, keys: Keys,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    homes: list[str] = []
    real = tempfile.mkdtemp

    def spy(*args: Any, **kwargs: Any) -> str:
        homes.append(real(*args, **kwargs))
        return homes[-1]

    monkeypatch.setattr(tempfile, "mkdtemp", spy)
    lock = signed_tool(tmp_path, store, keys, signer=keys.main, key_file=keys.main.public,
                       fingerprints=[keys.main.fingerprint])
    check(lock, store)
    assert len(homes) == 1 and len(homes[0]) < 20
    assert not Path(homes[0]).exists()
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            assert homes[0].encode() not in cmdline.read_bytes()
        except OSError:
            continue


def test_a_bad_signature_file_is_fetched_again_once_fixed_at_its_source(
        tmp_path: Path, keys: Keys) -> None:
    """An error page served as the .sig must not wedge the cache: verify forgets it."""
    from tasks.inputs import download
    from tasks.settings import Settings

    src = tmp_path / "src"
    src.mkdir()
    (src / "tool-1.0.tar.gz").write_bytes(DATA)
    (src / "up.asc").write_bytes(keys.main.public)
    sig = src / "tool-1.0.tar.gz.sig"
    sig.write_bytes(b"<html>502 Bad Gateway</html>\n")
    lock = load(write_lock(tmp_path / "rsrc.lock.toml",
                           keys=[{"name": "up", "url": (src / "up.asc").as_uri(),
                                  "fingerprints": [keys.main.fingerprint]}],
                           artifacts=[{"name": "tool", "url": (src / "tool-1.0.tar.gz").as_uri(),
                                       "sha256": hashlib.sha256(DATA).hexdigest(),
                                       "signature_url": sig.as_uri(), "key": "up"}]))
    settings = Settings(lock=lock.path, cache=tmp_path / "cache", out=tmp_path / "out")
    store = Store(settings.cache)
    download.fetch_all(lock, settings, log=lambda _l: None)
    with pytest.raises(SignatureError, match="fetches its signature files again"):
        verify_all(lock, store, log=lambda _l: None)
    keys.ring.sign(keys.main, src / "tool-1.0.tar.gz", sig)  # the mirror recovers
    lines: list[str] = []
    download.fetch_all(lock, settings, log=lines.append)
    assert any("Downloading signature of tool" in ln for ln in lines)
    [v] = verify_all(lock, store, log=lambda _l: None)
    assert v.method == f"signature by {keys.main.fingerprint}"


def test_a_file_changed_in_place_with_its_mtime_put_back_is_verified_again(
        tmp_path: Path, store: Store) -> None:
    """The stamp keyed on size, mtime and inode passed such a file without a look (issue 8 #10)."""
    sha = put(store, DATA)
    art = {"name": "tool", "url": TOOL_URL, "sha256": sha}
    lock = load(write_lock(tmp_path / "l.toml", keys=[], artifacts=[art]))
    assert not check(lock, store).cached and check(lock, store).cached
    path = store.path(sha)
    st = path.stat()
    with path.open("r+b") as f:  # same size, same inode, other bytes
        f.write(b"T")
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert path.stat().st_mtime_ns == st.st_mtime_ns and path.stat().st_size == st.st_size
    with pytest.raises(HashMismatch, match="moved it to"):
        check(lock, store)
