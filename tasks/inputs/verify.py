"""Verify cached artifacts: sha256 against the lockfile, then OpenPGP signatures by fingerprint.

A signature is accepted only when gpg reports ``VALIDSIG`` for a key whose primary or signing
subkey fingerprint the lockfile pins; python-gnupg's ``valid`` alone proves nothing (it is true
for any key in the keyring). gpg runs in a throwaway GNUPGHOME holding only the artifact's key
file(s). Expired keys: a signature made *before* the key expired is accepted, with a note
(LLVM's 474E2231… expired 2026-05-06); one made at or after expiry is rejected, as is any
signature by a revoked key and any signature file holding a BAD signature. Successful
verifications leave a stamp in the store, so a re-run re-hashes nothing and runs no gpg until
a file, a pin or a fingerprint changes.

Over 300 lines because the trust rule is kept in one reviewable place: gpg's status
parsing, the expiry and revocation judgement and the stamps that skip re-verification.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tasks.atomic import write_atomic
from tasks.errors import CompatError, HashMismatch, NotDownloaded, OutputError, SignatureError, ToolError
from tasks.inputs.lockfile import Artifact, Key, Lockfile, url_basename
from tasks.proc import run as proc_run
from tasks.store import Store, file_identity, sha256_file

STAMP_VERSION = 2  # 2: a file is keyed on its ctime too (an edit with the mtime put back)
_LINE = re.compile(r"^([0-9a-fA-F]{64}) [ *](.+?)\r?$")
_VERDICTS = {"GOODSIG", "EXPKEYSIG", "REVKEYSIG", "BADSIG", "EXPSIG", "ERRSIG"}


@dataclass(frozen=True)
class Verified:
    """One artifact that passed: how, and whether a stamp from an earlier run vouched for it."""

    artifact: str
    sha256: str
    method: str
    cached: bool
    note: str = ""

    @property
    def action(self) -> str:
        """What was done: "verified" now, or "cached" (a stamp from an earlier run vouched)."""
        return "cached" if self.cached else "verified"


@dataclass
class _Sig:
    """What gpg's status lines said about one signature."""

    verdict: str = ""
    keyid: str = ""
    errsig_rc: str = ""
    validsig: list[str] = field(default_factory=list)
    key_expired: list[int] = field(default_factory=list)


def key_file(key: Key, store: Store) -> tuple[Path, str]:
    """The cached key file and its sha256: the pinned one, else the one recorded for its URL."""
    recorded = store.url_hash(key.url)
    if key.sha256:
        if store.has(key.sha256):
            return store.path(key.sha256), key.sha256
        if recorded:
            raise HashMismatch(f"key '{key.name}': {url_basename(key.url)} has sha256 {recorded}, "
                               f"lockfile pins {key.sha256}")
    elif recorded:
        return store.path(recorded), recorded
    raise NotDownloaded(f"key '{key.name}': {url_basename(key.url)} is not downloaded; "
                        "run `invoke download`")


def check_signature(signature: Path, data: Path, key_files: Sequence[Path],
                    fingerprints: Sequence[str], *, what: str, keys_label: str) -> tuple[str, str]:
    """Verify a detached signature; return (the pinned fingerprint that signed, a note).

    ``what`` names the artifact and signature file in errors; ``keys_label`` the key file(s).
    """
    import gnupg

    home = tempfile.mkdtemp(prefix="cbv", dir="/tmp")  # short: gpg socket paths are limited
    try:
        try:
            gpg = gnupg.GPG(gnupghome=home, options=["--no-autostart"])
        except (OSError, ValueError) as exc:
            raise ToolError(f"cannot run gpg: {exc}") from None
        for path in key_files:
            if not gpg.import_keys_file(str(path)).fingerprints:
                raise SignatureError(f"{what}: key file {keys_label} holds no OpenPGP key")
        result = gpg.verify_file(str(signature), str(data))
        expiries = _expiries(gpg.list_keys())
    finally:
        try:  # each gpg home starts an agent: stop it (best effort)
            proc_run(["gpgconf", "--homedir", home, "--kill", "all"], what="stopping gpg-agent", timeout=30)
        except ToolError:
            pass
        shutil.rmtree(home, ignore_errors=True)
    return _judge(_parse_status(result.stderr or ""), fingerprints, expiries, what, keys_label)


def _parse_status(stderr: str) -> list[_Sig]:
    sigs: list[_Sig] = []
    for line in stderr.splitlines():
        if not line.startswith("[GNUPG:] "):
            continue
        word, _, rest = line[9:].partition(" ")
        if word == "NEWSIG" or (not sigs and word in _VERDICTS):
            sigs.append(_Sig())
        if not sigs:
            continue
        sig, parts = sigs[-1], rest.split()
        if word in _VERDICTS:
            sig.verdict = word
            sig.keyid = parts[6] if word == "ERRSIG" and len(parts) > 6 else (parts or [""])[0]
            sig.errsig_rc = parts[5] if word == "ERRSIG" and len(parts) > 5 else ""
        elif word == "VALIDSIG":
            sig.validsig = parts
        elif word == "KEYEXPIRED" and parts and parts[0].isdigit():
            sig.key_expired.append(int(parts[0]))
    return sigs


def _expiries(keys: Sequence[dict[str, Any]]) -> dict[str, int]:
    """Fingerprint -> expiry (epoch) for every key and subkey; a subkey ends with its primary."""
    out: dict[str, int] = {}
    for k in keys:
        primary = int(k["expires"]) if str(k.get("expires", "")).isdigit() else None
        if primary is not None:
            out[k["fingerprint"]] = primary
        for sub in (k.get("subkey_info") or {}).values():
            ends = [int(sub["expires"])] if str(sub.get("expires", "")).isdigit() else []
            ends += [primary] if primary is not None else []
            if ends and sub.get("fingerprint"):
                out[sub["fingerprint"]] = min(ends)
    return out


def _judge(sigs: list[_Sig], pinned: Sequence[str], expiries: dict[str, int], what: str,
           keys_label: str) -> tuple[str, str]:
    if not sigs:
        raise SignatureError(f"{what} is not an OpenPGP signature")
    accepted: tuple[str, str] | None = None
    problems: list[str] = []
    for s in sigs:
        fpr = s.validsig[0] if s.validsig else s.keyid
        primary = s.validsig[9] if len(s.validsig) > 9 else fpr
        if s.verdict == "BADSIG":
            raise SignatureError(f"{what}: BAD signature by key {s.keyid}: the file or the "
                                 "signature was altered")
        if s.verdict == "REVKEYSIG":
            raise SignatureError(f"{what}: signed by revoked key {primary}")
        if s.verdict == "ERRSIG" and s.errsig_rc == "9":
            problems.append(f"signed by key {s.keyid}, which is not in key file {keys_label}")
            continue
        if s.verdict not in ("GOODSIG", "EXPKEYSIG") or len(s.validsig) < 3:
            problems.append(f"no valid signature (gpg said {s.verdict or 'nothing'})")
            continue
        match = primary if primary in pinned else fpr if fpr in pinned else None
        if match is None:
            by = primary if primary == fpr else f"{primary} (subkey {fpr})"
            problems.append(f"signed by {by}, lockfile accepts {', '.join(pinned)}")
            continue
        note = ""
        if s.verdict == "EXPKEYSIG":
            ends = s.key_expired + [expiries[f] for f in {fpr, primary} if f in expiries]
            signed = _epoch(s.validsig[2])
            if not ends or signed is None or signed >= min(ends):
                when = f"expired {_day(min(ends))}" if ends else "expired"
                problems.append(f"signed {_day(signed)} by {match}, whose key {when} before "
                                "that; signatures made after expiry are not accepted")
                continue
            note = f"key expired {_day(min(ends))} after signing ({_day(signed)})"
        accepted = accepted or (match, note)
    if accepted:
        return accepted
    raise SignatureError(f"{what}: {problems[0]}")


def _epoch(value: str) -> int | None:
    if value.isdigit():
        return int(value)
    try:
        return int(datetime.strptime(value, "%Y%m%dT%H%M%S").replace(tzinfo=UTC).timestamp())
    except ValueError:
        return None


def _day(epoch: int | None) -> str:
    return "at an unknown time" if epoch is None else \
        datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d")


def listed_hashes(text: str, filename: str) -> list[str]:
    """The sha256 values a ``<hex>  <name>`` / ``<hex> *<name>`` list gives for ``filename``."""
    out = []
    for line in text.splitlines():
        m = _LINE.match(line)
        if m and m.group(2) == filename:
            out.append(m.group(1).lower())
    return out


def _aux(store: Store, url: str, what: str) -> tuple[Path, str]:
    sha = store.url_hash(url)
    if sha is None:
        raise SignatureError(f"{what}: {url_basename(url)} is missing; run `invoke download`")
    return store.path(sha), sha


def _rehash(store: Store, path: Path, sha: str, label: str) -> None:
    """Hash a cached file again; move it aside if it is not what its name says."""
    got = sha256_file(path)
    if got != sha:
        try:
            moved = f"moved it to {store.quarantine(path, label)}"
        except OSError as exc:
            moved = f"could not move it aside ({exc.filename or path}: {exc.strerror or exc})"
        raise HashMismatch(f"{label} has sha256 {got}, expected {sha}; {moved}")


def verify_artifact(lock: Lockfile, artifact: Artifact, store: Store) -> Verified:
    """Check one artifact's hash and signature(s), or trust a stamp of the same material."""
    where = f"artifact '{artifact.name}'"
    data = store.path(artifact.sha256)
    if not data.is_file():
        raise NotDownloaded(f"{where}: {artifact.filename} is not downloaded; "
                            "run `invoke download`")
    files: dict[str, tuple[Path, str]] = {"artifact": (data, artifact.sha256)}
    signed = artifact.signature_url or artifact.checksums_signature_url
    key = lock.key(artifact.key) if artifact.key and signed else None
    if artifact.signature_url:
        files["signature"] = _aux(store, artifact.signature_url, where)
    if artifact.checksums_url and artifact.checksums_signature_url:
        files["checksums"] = _aux(store, artifact.checksums_url, where)
        files["checksums_signature"] = _aux(store, artifact.checksums_signature_url, where)
    if key is not None:
        files["key"] = key_file(key, store)
    material = {
        "v": STAMP_VERSION, "artifact": artifact.name, "filename": artifact.filename,
        "sha256": artifact.sha256,
        "files": {role: [sha, *file_identity(path)] for role, (path, sha) in files.items()},
        "fingerprints": sorted(key.fingerprints) if key else [],
    }
    stamp = store.stamp(material)
    cached = _read_stamp(stamp, material)
    if cached is not None:
        return Verified(artifact.name, artifact.sha256, cached[0], True, cached[1])

    urls = {"artifact": artifact.filename, "signature": artifact.signature_url or "",
            "checksums": artifact.checksums_url or "", "key": key.url if key else "",
            "checksums_signature": artifact.checksums_signature_url or ""}
    for role, (path, sha) in files.items():
        _rehash(store, path, sha, f"{where}: {role} file {url_basename(urls[role])}")
    try:
        method, note = _check_signed(artifact, files, key, data, where)
    except (SignatureError, HashMismatch) as exc:
        # Unpinned files (signatures, lists, key files) are cached by URL: forget them, so
        # a bad copy (an error page, a mirror's hiccup) is fetched again, never kept.
        unpinned = [artifact.signature_url, artifact.checksums_url, artifact.checksums_signature_url,
                    key.url if key is not None and key.sha256 is None else None]
        for url in filter(None, unpinned):
            store.forget_url(url)
        raise type(exc)(f"{exc}; the next `invoke download` fetches its signature files again") from None
    record = {"material": material, "method": method, "note": note}
    try:
        write_atomic(stamp, json.dumps(record, sort_keys=True).encode())
    except OSError as exc:  # a full disk: a write's error names no file, so name it here
        raise OutputError(f"{where}: verified, but cannot write its stamp {exc.filename or stamp}: "
                          f"{exc.strerror or exc}") from None
    return Verified(artifact.name, artifact.sha256, method, False, note)


def _check_signed(artifact: Artifact, files: dict[str, tuple[Path, str]], key: Key | None, data: Path,
                  where: str) -> tuple[str, str]:
    """(method, note) of an artifact's signature and signed checksum list checks."""
    methods, notes = [], []
    if key is not None and "signature" in files:
        fpr, note = check_signature(
            files["signature"][0], data, [files["key"][0]], key.fingerprints,
            what=f"{where}: {url_basename(artifact.signature_url or '')}",
            keys_label=f"'{key.name}' ({url_basename(key.url)})")
        methods.append(f"signature by {fpr}")
        notes += [note] if note else []
    if key is not None and "checksums" in files:
        fpr, note = _check_list(artifact, files, key, where)
        methods.append(f"signed checksum list by {fpr}")
        notes += [note] if note else []
    return "; ".join(methods) or "sha256", "; ".join(notes)


def _check_list(artifact: Artifact, files: dict[str, tuple[Path, str]], key: Key,
                where: str) -> tuple[str, str]:
    list_name = url_basename(artifact.checksums_url or "")
    fpr, note = check_signature(
        files["checksums_signature"][0], files["checksums"][0], [files["key"][0]],
        key.fingerprints, what=f"{where}: {url_basename(artifact.checksums_signature_url or '')}",
        keys_label=f"'{key.name}' ({url_basename(key.url)})")
    text = files["checksums"][0].read_text(encoding="utf-8", errors="replace")
    listed = listed_hashes(text, artifact.filename)
    if not listed:
        raise SignatureError(f"{where}: {artifact.filename} is not listed in {list_name}")
    wrong = [h for h in listed if h != artifact.sha256]
    if wrong:
        raise HashMismatch(f"{where}: {list_name} lists sha256 {wrong[0]} for "
                           f"{artifact.filename}, lockfile pins {artifact.sha256}")
    return fpr, note


def _read_stamp(stamp: Path, material: dict[str, Any]) -> tuple[str, str] | None:
    try:
        record = json.loads(stamp.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("material") != material:
        return None
    return str(record.get("method", "")), str(record.get("note", ""))


def verify_all(lock: Lockfile, store: Store, *, only: str | None = None,
               log: Callable[[str], None] = print) -> list[Verified]:
    """Verify every artifact (or only one); return each result, or raise the first failure.

    Logs "Verified ..." for each artifact checked now, nothing for one a stamp vouches for;
    each failure but the first (which is raised, counting the others) as "Also failed: ...".
    """
    artifacts = [lock.artifact(only)] if only else list(lock.artifacts)
    done: list[Verified] = []
    failures: list[CompatError] = []
    for artifact in artifacts:
        try:
            v = verify_artifact(lock, artifact, store)
        except CompatError as exc:
            failures.append(exc)
            continue
        done.append(v)
        if not v.cached:
            log(f"Verified {v.artifact}: {v.method}" + (f" ({v.note})" if v.note else ""))
    if failures:
        for extra in failures[1:]:
            log(f"Also failed: {extra}")
        first = failures[0]
        if len(failures) == 1:
            raise first
        raise type(first)(f"{first} (and {len(failures) - 1} more)") from first
    return done


def summary(verified: Sequence[Verified]) -> str:
    """One line for a task to print: "5 artifacts verified (1 fresh, 4 cached)"."""
    fresh = sum(v.action == "verified" for v in verified)
    noun = "artifact" if len(verified) == 1 else "artifacts"
    return f"{len(verified)} {noun} verified ({fresh} fresh, {len(verified) - fresh} cached)"
