"""Check each pinned RPM's own OpenPGP signatures against its target's pinned key.

The RPM pins come from repodata, which nobody signs; the packages themselves are signed.
An RPM is a 96-byte lead, a *signature header*, the *header* and the compressed payload.
The signature header holds OpenPGP signature packets: tag 268 (RSA) or 267 (DSA, EdDSA)
over the header's bytes (magic included), and in RPMs made before rpm 4.14 (Fedora 20's,
CentOS 7's) also tag 1002 (RSA) or 1005 (others) over header + payload. Newer RPMs bind
the payload instead through a digest in the signed header (tag 5092, algorithm in 5093).

This module reads those bytes itself and gives each signature to
:func:`tasks.inputs.verify.check_signature` — the same rule as ``verify``: gpg in a
throwaway GNUPGHOME that holds only the target's ``rpm_key`` file, accepted only when gpg's
``VALIDSIG`` fingerprint is one the lockfile pins (never rpm's 8-hex key IDs). Every
signature present must pass — every *instance*: a signature header holding a tag twice (a
stranger's 267, then the pinned key's) has each checked, so the stranger's is refused —
and the payload must be covered (a header+payload signature,
or the header's payload digest, recomputed here). Success is stamped in the store, keyed
on the RPM's hash and stat, the key file and the fingerprints, so a re-check runs no gpg.

A target without ``rpm_key`` (the Debian test profile) pins no RPMs and checks nothing.
"""

from __future__ import annotations

import hashlib
import json
import struct
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from tasks.atomic import write_atomic
from tasks.errors import (
    CompatError,
    HashMismatch,
    LockfileError,
    NotDownloaded,
    RpmFormatError,
    RpmSignerError,
    RpmTampered,
    RpmUnsigned,
    SignatureError,
)
from tasks.inputs.lockfile import Key, Lockfile, Rpm, url_basename
from tasks.inputs.verify import check_signature, key_file
from tasks.store import Store, file_identity, sha256_file

STAMP_VERSION = 2  # 2: a file is keyed as verify's stamps are (ctime, device too)
LEAD = b"\xed\xab\xee\xdb"
MAGIC = b"\x8e\xad\xe8\x01"
HEADER_SIGS = {268: "RSA header signature", 267: "DSA/EdDSA header signature"}
WHOLE_SIGS = {1002: "RSA header+payload signature", 1005: "header+payload signature"}
PAYLOADDIGEST, PAYLOADDIGESTALGO = 5092, 5093
_PGP_HASHES = {1: "md5", 2: "sha1", 8: "sha256", 9: "sha384", 10: "sha512", 11: "sha224"}
_MAX_HEADER = 256 << 20  # rpm's own limit on a header's data
_CHUNK = 1 << 20
Log = Callable[[str], None]


@dataclass(frozen=True)
class Layout:
    """Where an RPM's parts are, and what its signature header and header say."""

    signatures: dict[int, tuple[bytes, ...]]  # signature tag -> each instance's OpenPGP packet(s), in order
    header: tuple[int, int]  # [start, end) of the header; the payload follows it
    payload_digest: tuple[str, str] | None  # (hashlib name, hex) from tags 5093/5092


def _section(f: IO[bytes], label: str, what: str) -> tuple[list[tuple[int, int, int, int]], bytes]:
    intro = f.read(16)
    if len(intro) != 16 or intro[:4] != MAGIC:
        raise RpmFormatError(f"rpm {label}: not an RPM ({what} magic missing)")
    count, size = struct.unpack(">II", intro[8:16])
    if count > 0x10000 or size > _MAX_HEADER:
        raise RpmFormatError(f"rpm {label}: {what} of {count} entries, {size} bytes: too large")
    index = f.read(16 * count)
    data = f.read(size)
    if len(index) != 16 * count or len(data) != size:
        raise RpmFormatError(f"rpm {label}: truncated {what}")
    return [struct.unpack(">iIiI", index[16 * i:16 * i + 16]) for i in range(count)], data


def read_layout(path: Path, label: str) -> Layout:
    """Parse the lead, the signature header and the header of the RPM at ``path``."""
    with path.open("rb") as f:
        lead = f.read(96)
        if len(lead) != 96 or lead[:4] != LEAD:
            raise RpmFormatError(f"rpm {label}: not an RPM (no lead)")
        entries, data = _section(f, label, "signature header")
        sigs: dict[int, tuple[bytes, ...]] = {}
        for tag, typ, offset, count in entries:
            if tag in HEADER_SIGS or tag in WHOLE_SIGS:
                if typ != 7 or offset < 0 or offset + count > len(data):  # 7: RPM_BIN_TYPE
                    raise RpmFormatError(f"rpm {label}: malformed signature tag {tag}")
                sigs[tag] = (*sigs.get(tag, ()), data[offset:offset + count])  # each one is checked
        f.seek(-f.tell() % 8, 1)  # the signature header is padded to 8 bytes
        start = f.tell()
        entries, data = _section(f, label, "header")
        end = f.tell()
    digest, algo = None, 8  # rpm's default payload digest is SHA-256
    for tag, typ, offset, count in entries:
        if not 0 <= offset < len(data):
            continue
        if tag == PAYLOADDIGEST and typ in (6, 8) and count >= 1:  # STRING / STRING_ARRAY
            digest = data[offset:].split(b"\0", 1)[0].decode("ascii", "replace").lower()
        elif tag == PAYLOADDIGESTALGO and typ == 4 and offset + 4 <= len(data):  # INT32
            algo = struct.unpack(">I", data[offset:offset + 4])[0]
    payload = None
    if digest is not None:
        if algo not in _PGP_HASHES:
            raise RpmFormatError(f"rpm {label}: unknown payload digest algorithm {algo}")
        payload = (_PGP_HASHES[algo], digest)
    return Layout(sigs, (start, end), payload)


def _copy_range(src: Path, dest: Path, start: int, end: int | None) -> None:
    with src.open("rb") as f, dest.open("wb") as out:
        f.seek(start)
        left = None if end is None else end - start
        while left is None or left > 0:
            chunk = f.read(_CHUNK if left is None else min(_CHUNK, left))
            if not chunk:
                break
            out.write(chunk)
            if left is not None:
                left -= len(chunk)


def _payload_hash(path: Path, start: int, algo: str) -> str:
    h = hashlib.new(algo)
    with path.open("rb") as f:
        f.seek(start)
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def check_rpm(path: Path, key_path: Path, key: Key, *, label: str) -> tuple[str, str]:
    """Check one RPM's signatures against ``key``'s pinned fingerprints: (how it passed, a note).

    The note is verify's: a signature made before its key expired passes, saying so.

    Raises RpmUnsigned (none, or the payload not covered), RpmSignerError (not by a pinned
    fingerprint), RpmTampered (a BAD signature or a wrong payload digest), RpmFormatError.
    """
    layout = read_layout(path, label)
    wanted = f"'{key.name}' ({', '.join(key.fingerprints)})"
    if not layout.signatures:
        raise RpmUnsigned(f"rpm {label}: not signed (no OpenPGP signature in its signature "
                          f"header); the target's RPMs must be signed by {wanted}")
    if not set(layout.signatures) & set(WHOLE_SIGS) and layout.payload_digest is None:
        raise RpmUnsigned(f"rpm {label}: its signature covers the header only, and the header "
                          "holds no payload digest: the payload is not signed")
    start, end = layout.header
    signers: set[str] = set()
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="cbrpm") as tmp:
        for tag, packets in sorted(layout.signatures.items()):
            signed = Path(tmp) / "signed"
            _copy_range(path, signed, start, end if tag in HEADER_SIGS else None)
            for n, packet in enumerate(packets, 1):
                what = HEADER_SIGS.get(tag) or WHOLE_SIGS[tag]
                what += f" ({n} of {len(packets)})" if len(packets) > 1 else ""
                sig = Path(tmp) / "sig"
                sig.write_bytes(packet)
                try:
                    fpr, note = check_signature(sig, signed, [key_path], key.fingerprints,
                                                 what=f"rpm {label}: {what}",
                                                 keys_label=f"'{key.name}' ({url_basename(key.url)})")
                except SignatureError as exc:
                    if "BAD signature" in str(exc):
                        raise RpmTampered(f"rpm {label}: {what} is BAD: the package was altered "
                                          "after it was signed") from None
                    raise RpmSignerError(f"{exc}") from None
                signers.add(fpr)
                notes += [note] if note and note not in notes else []
    if layout.payload_digest is not None:
        algo, want = layout.payload_digest
        got = _payload_hash(path, end, algo)
        if got != want:
            raise RpmTampered(f"rpm {label}: payload {algo} is {got}, its signed header says "
                              f"{want}: the package was altered after it was signed")
    return f"signed by {', '.join(sorted(signers))}", "; ".join(notes)


def rpm_key(lock: Lockfile) -> Key:
    """The [[key]] the target's ``rpm_key`` names; a LockfileError when there is none."""
    if not lock.target.rpm_key:
        raise LockfileError(
            f"{lock.path.name}: target '{lock.target.name}' names no rpm_key, so its RPMs' "
            "signatures cannot be checked; add rpm_key = \"<a [[key]] name>\" to "
            f"[targets.{lock.target.name}]")
    return lock.key(lock.target.rpm_key)


def check_rpms(lock: Lockfile, store: Store, rpms: Sequence[Rpm] | None = None, *,
               log: Log = print) -> int:
    """Check every pinned RPM (or ``rpms``) of the target; return how many were checked now.

    Nothing is done or said for a target that pins no RPMs, nor for RPMs a stamp vouches for.
    Each failure is one line naming the package; the first is raised, the others logged.
    """
    pins = list(lock.rpms if rpms is None else rpms)
    if not pins:
        return 0
    key = rpm_key(lock)
    key_path, key_sha = key_file(key, store)
    failures: list[CompatError] = []
    checked = 0
    for r in pins:
        try:
            done, note = _check_one(r, store, key, key_path, key_sha)
        except CompatError as exc:
            failures.append(exc)
            continue
        checked += done
        if note and done:  # as verify says it, when checked now: "(key expired ... after signing ...)"
            log(f"Verified rpm {r.filename} ({note})")
    for extra in failures[1:]:
        log(f"Also failed: {extra}")
    if failures:
        first = failures[0]
        more = f" (and {len(failures) - 1} more failed)" if len(failures) > 1 else ""
        raise type(first)(f"{first}{more}") from None
    if checked:
        log(f"Verified {checked} RPM signature{'s' if checked != 1 else ''} by '{key.name}'")
    return checked


def _check_one(r: Rpm, store: Store, key: Key, key_path: Path, key_sha: str) -> tuple[int, str]:
    """(1 when it was checked now, 0 when its stamp vouched for it; the signature's note)."""
    path = store.path(r.sha256)
    if not path.is_file():
        raise NotDownloaded(f"rpm {r.filename} is not downloaded; run `invoke download`")
    material = {"v": STAMP_VERSION, "kind": "rpm-signature", "rpm": r.sha256, "stat": file_identity(path),
                "key": [key_sha, *file_identity(key_path)], "fingerprints": sorted(key.fingerprints)}
    stamp = store.stamp(material)
    try:
        recorded = json.loads(stamp.read_text())
        if recorded.get("material") == material:
            return 0, str(recorded.get("note", ""))
    except (OSError, ValueError, AttributeError):
        pass
    for file, sha, what in ((path, r.sha256, f"rpm {r.filename}"),
                            (key_path, key_sha, f"key '{key.name}'")):
        got = sha256_file(file)
        if got != sha:
            moved = store.quarantine(file, what)
            raise HashMismatch(f"{what} has sha256 {got}, expected {sha}; moved it to {moved}")
    method, note = check_rpm(path, key_path, key, label=r.filename)
    write_atomic(stamp, json.dumps({"material": material, "method": method, "note": note}, sort_keys=True).encode())
    return 1, note

