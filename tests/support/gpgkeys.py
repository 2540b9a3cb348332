"""Test helpers: real ed25519 OpenPGP keys made per session, a store filler, a lockfile writer.

Keys live in a GNUPGHOME under a short /tmp path (gpg-agent's socket path has a length limit)
and are signed with gpg's ``--faked-system-time`` where a test needs a signature in the past.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gnupg
import tomlkit

from tasks.store import Store

# The expiring key: made 2020-01-01, expires 2021-01-01 in its exported public key.
EXPIRING_CREATED = "20200101T000000"
BEFORE_EXPIRY = "20200601T000000"
AFTER_EXPIRY = "20220201T000000"


@dataclass(frozen=True)
class TestKey:
    """A generated key: primary fingerprint, signing (sub)key fingerprint, public key file bytes."""

    __test__ = False  # not a pytest test class
    name: str
    fingerprint: str
    signing: str
    public: bytes


class Keyring:
    """A session's signing keys, all with their secret halves in one throwaway home."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.home = root / "s"
        self.home.mkdir(mode=0o700)
        self.gpg = gnupg.GPG(gnupghome=str(self.home))

    def _at(self, when: str | None) -> gnupg.GPG:
        if when is None:
            return self.gpg
        return gnupg.GPG(gnupghome=str(self.home), options=["--faked-system-time", f"{when}!"])

    def generate(self, name: str, *, subkey: bool = False, created: str | None = None,
                 expires: str = "0") -> TestKey:
        params: dict[str, Any] = dict(
            key_type="EDDSA", key_curve="ed25519", key_usage="sign", name_real=f"Test {name}",
            name_email=f"{name}@compatbuild.invalid", expire_date=expires, no_protection=True)
        if subkey:
            params.update(subkey_type="EDDSA", subkey_curve="ed25519", subkey_usage="sign")
        gpg = self._at(created)
        fpr = str(gpg.gen_key(gpg.gen_key_input(**params)).fingerprint)
        assert len(fpr) == 40, f"key generation failed for {name}"
        signing = fpr
        if subkey:
            (info,) = self.gpg.list_keys(keys=fpr)
            signing = info["subkeys"][0][2]
        return TestKey(name, fpr, signing, self.export(fpr))

    def export(self, fpr: str) -> bytes:
        return str(self.gpg.export_keys(fpr)).encode()

    def sign(self, key: TestKey, data: Path, out: Path, *, at: str | None = None) -> Path:
        """Write a detached binary signature of ``data`` by ``key`` (its signing subkey)."""
        result = self._at(at).sign_file(str(data), keyid=key.fingerprint, detach=True,
                                        binary=True, output=str(out))
        assert result.status == "signature created", result.stderr
        return out

    def set_expiry(self, key: TestKey, until: str, *, at: str) -> None:
        self._gpg_cli(["--faked-system-time", f"{at}!", "--quick-set-expire", key.fingerprint,
                       until], self.home)

    def revoked_public(self, key: TestKey) -> bytes:
        """The public key with its revocation certificate applied (the signer home is untouched)."""
        other = self.root / "r"
        other.mkdir(mode=0o700, exist_ok=True)
        gpg = gnupg.GPG(gnupghome=str(other), options=["--no-autostart"])
        gpg.import_keys(key.public)
        rev = (self.home / "openpgp-revocs.d" / f"{key.fingerprint}.rev").read_text()
        gpg.import_keys(rev.replace(":-----BEGIN", "-----BEGIN"))
        return str(gpg.export_keys(key.fingerprint)).encode()

    @staticmethod
    def _gpg_cli(args: list[str], home: Path) -> None:
        subprocess.run(["gpg", "--homedir", str(home), "--batch", *args],  # noqa: S603, S607
                       check=True, capture_output=True)

    def close(self) -> None:
        for home in (self.home, self.root / "r"):
            if home.exists():
                subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"],  # noqa: S603, S607
                               check=False, capture_output=True)
        shutil.rmtree(self.root, ignore_errors=True)


@dataclass(frozen=True)
class Keys:
    """The session's keys: ``main`` (signing subkey, like Rust's), ``other`` and ``stranger``
    (never pinned), ``expiring`` (public file says it expired 2021-01-01; the secret half was
    extended so it can still sign after that), ``revoked`` (a public file with revocation)."""

    ring: Keyring
    main: TestKey
    other: TestKey
    stranger: TestKey
    expiring: TestKey
    revoked: TestKey


@contextmanager
def session_keys() -> Iterator[Keys]:
    """Generate the keys once; kill the agent and remove the home afterwards."""
    ring = Keyring(Path(tempfile.mkdtemp(prefix="cbt", dir="/tmp")))
    try:
        main = ring.generate("main", subkey=True)
        other = ring.generate("other")
        stranger = ring.generate("stranger")
        exp = ring.generate("expiring", created=EXPIRING_CREATED, expires="2021-01-01")
        ring.set_expiry(exp, "2030-01-01", at="20211201T000000")
        rev = ring.generate("revoked")
        revoked = TestKey(rev.name, rev.fingerprint, rev.signing, ring.revoked_public(rev))
        yield Keys(ring, main, other, stranger, exp, revoked)
    finally:
        ring.close()


def put(store: Store, data: bytes, url: str | None = None) -> str:
    """Put bytes into the store as download.py would; record ``url`` for unpinned files."""
    store.ensure()
    sha = hashlib.sha256(data).hexdigest()
    path = store.path(sha)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    if url is not None:
        store.record_url(url, sha, len(data))
    return sha


def write_lock(path: Path, *, keys: list[dict[str, Any]],
               artifacts: list[dict[str, Any]]) -> Path:
    """A minimal valid lockfile with the given [[key]] and [[artifact]] tables."""
    doc = {
        "schema": 1,
        "target": {"name": "fedora20", "glibc": "2.18"},
        "base": {"image": "docker.io/library/fedora:20", "digest": "sha256:" + "0" * 64},
        "key": keys,
        "artifact": artifacts,
    }
    path.write_text(tomlkit.dumps(doc))
    return path
