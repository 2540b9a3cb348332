"""RPM signatures (tasks.inputs.rpmsig) on real RPMs built and signed in this session.

rpmbuild makes the packages; rpmsign signs them with keys made here: the session's ed25519
key (a signing subkey, header signature tag 267) and an RSA key with ``--rpmv3`` (tags 268
and 1002, the tags Fedora 20's and CentOS 7's packages carry). Unsigned, wrongly signed,
altered and non-RPM files are each refused with one line naming the package and an exit
code of their own; rpm's own verdict (rpmkeys -Kv) is checked to agree.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from tasks import pipeline
from tasks.errors import (
    CompatError,
    HashMismatch,
    LockfileError,
    RpmFormatError,
    RpmSignerError,
    RpmTampered,
    RpmUnsigned,
    SignatureError,
)
from tasks.inputs import rpmsig
from tasks.inputs.lockfile import load
from tasks.settings import Settings
from tasks.store import Store, sha256_file
from tests.support.gpgkeys import Keys, TestKey, put
from tests.support.rpmtools import (
    flip,
    rpm_says,
    signature_packets,
    signed_copy,
    small_rpm,
    with_extra_signature,
)

KEY_URL = "https://keys.example.invalid/RPM-GPG-KEY-test"


@pytest.fixture(scope="module")
def rsa(keys: Keys) -> TestKey:
    """An RSA signing key, as Fedora's and CentOS's are."""
    gpg = keys.ring.gpg
    fpr = str(gpg.gen_key(gpg.gen_key_input(
        key_type="RSA", key_length=2048, key_usage="sign", name_real="Test rsa",
        name_email="rsa@compatbuild.invalid", expire_date="0", no_protection=True)).fingerprint)
    assert len(fpr) == 40
    return TestKey("rsa", fpr, fpr, keys.ring.export(fpr))


@pytest.fixture(scope="module")
def rpms(tmp_path_factory: pytest.TempPathFactory, keys: Keys, rsa: TestKey) -> dict[str, Path]:
    """One package in every state a pin can be in."""
    work = tmp_path_factory.mktemp("rpms")
    base = small_rpm(work, "hello", {"usr/share/hello/msg": b"hello from an rpm\n" * 500})
    home = keys.ring.home
    out = {"unsigned": base}
    out["signed"] = signed_copy(base, work / "signed.rpm", keys.main, home)
    out["rsa-v3"] = signed_copy(base, work / "rsa-v3.rpm", rsa, home, v3=True)
    out["other"] = signed_copy(base, work / "other.rpm", keys.other, home)
    out["payload"] = flip(signed_copy(base, work / "payload.rpm", keys.main, home), -60)
    out["rsa-v3-payload"] = flip(signed_copy(base, work / "rsa-v3-payload.rpm", rsa, home, v3=True), -60)
    header = signed_copy(base, work / "header.rpm", keys.main, home)
    summary = header.read_bytes().find(b"a test package", rpmsig.read_layout(header, "h").header[0])
    out["header"] = flip(header, summary)  # the header's Summary: "` test package"
    # tag 267 twice: a stranger's signature first, the pinned key's second
    stranger = signature_packets(out["other"], 267)
    out["twice"] = with_extra_signature(out["signed"], work / "twice.rpm", 267, stranger[0])
    # by the expiring key (its public file: expired 2021-01-01): once before that, once after
    out["before-expiry"] = signed_copy(base, work / "before.rpm", keys.expiring, home, at="20200601T000000")
    out["after-expiry"] = signed_copy(base, work / "after.rpm", keys.expiring, home, at="20220601T000000")
    out["not-an-rpm"] = work / "junk.rpm"
    out["not-an-rpm"].write_bytes(b"<html>404</html>" * 10)
    return out


def lock_for(tmp_path: Path, rpm_files: dict[str, Path], *, fingerprint: str,
             rpm_key: str | None = "test") -> Path:
    """A schema 2 lockfile whose target pins ``rpm_files`` (name -> file://) under ``rpm_key``."""
    key_line = f'rpm_key = "{rpm_key}"\n' if rpm_key else ""
    pins = "".join(f'[[rpm]]\nname = "{n}"\nurl = "file://{p}"\nsha256 = "{sha256_file(p)}"\n\n'
                   for n, p in rpm_files.items())
    path = tmp_path / "rsrc.lock.toml"
    path.write_text(
        'schema = 2\n[targets.f]\nglibc = "2.18"\n' + key_line +
        f'[targets.f.base]\nimage = "local/x"\nid = "sha256:{"0" * 64}"\n\n'
        f'[[key]]\nname = "test"\nurl = "{KEY_URL}"\nfingerprints = ["{fingerprint}"]\n\n{pins}')
    return path


def stored(tmp_path: Path, keys_public: bytes, files: list[Path]) -> Store:
    store = Store(tmp_path / "cache")
    put(store, keys_public, KEY_URL)
    for f in files:
        put(store, f.read_bytes())
    return store


def check(tmp_path: Path, rpm: Path, key: TestKey, public: bytes | None = None) -> int:
    lock = load(lock_for(tmp_path, {"hello": rpm}, fingerprint=key.fingerprint))
    return rpmsig.check_rpms(lock, stored(tmp_path, public or key.public, [rpm]), log=lambda _: None)


# ------------------------------------------------------------------ accepted
def test_a_package_signed_before_its_key_expired_passes_with_verifys_note(
        rpms: dict[str, Path], keys: Keys, tmp_path: Path) -> None:
    said: list[str] = []
    lock = load(lock_for(tmp_path, {"hello": rpms["before-expiry"]}, fingerprint=keys.expiring.fingerprint))
    store = stored(tmp_path, keys.expiring.public, [rpms["before-expiry"]])
    assert rpmsig.check_rpms(lock, store, log=said.append) == 1
    assert said[0] == "Verified rpm before.rpm (key expired 2021-01-01 after signing (2020-06-01))", said
    again: list[str] = []
    assert rpmsig.check_rpms(lock, store, log=again.append) == 0 and again == []  # the stamp vouches, quietly
    after = tmp_path / "after"
    after.mkdir()
    with pytest.raises(SignatureError):  # made after the key expired: refused, as verify refuses it
        check(after, rpms["after-expiry"], keys.expiring)


def test_a_package_signed_by_the_pinned_key_passes(
        rpms: dict[str, Path], keys: Keys, tmp_path: Path) -> None:
    said: list[str] = []
    lock = load(lock_for(tmp_path, {"hello": rpms["signed"]}, fingerprint=keys.main.fingerprint))
    store = stored(tmp_path, keys.main.public, [rpms["signed"]])
    assert rpmsig.check_rpms(lock, store, log=said.append) == 1
    assert said == ["Verified 1 RPM signature by 'test'"]
    assert "Signature, key ID" in rpm_says(rpms["signed"], keys.main.public, tmp_path)


def test_rsa_header_and_header_plus_payload_signatures_pass(
        rpms: dict[str, Path], rsa: TestKey, tmp_path: Path) -> None:
    """Fedora 20's shape: tag 268 over the header, tag 1002 over header + payload."""
    assert set(rpmsig.read_layout(rpms["rsa-v3"], "x").signatures) == {268, 1002}
    path = rpms["rsa-v3"]
    lock = load(lock_for(tmp_path, {"hello": path}, fingerprint=rsa.fingerprint))
    method, _note = rpmsig.check_rpm(path, _key_file(tmp_path, rsa.public), lock.keys[0], label="x")
    assert method == f"signed by {rsa.fingerprint}"


def _key_file(tmp_path: Path, public: bytes) -> Path:
    path = tmp_path / "key.asc"
    path.write_bytes(public)
    return path


def test_a_second_check_runs_no_gpg_and_says_nothing(
        rpms: dict[str, Path], keys: Keys, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert check(tmp_path, rpms["signed"], keys.main) == 1

    def no_gpg(*_a: object, **_k: object) -> None:
        raise AssertionError("gpg ran again")

    monkeypatch.setattr(rpmsig, "check_signature", no_gpg)
    said: list[str] = []
    lock = load(tmp_path / "rsrc.lock.toml")
    assert rpmsig.check_rpms(lock, Store(tmp_path / "cache"), log=said.append) == 0
    assert said == []


# ------------------------------------------------------------------ refused, one line each
@pytest.mark.parametrize(("state", "error", "words"), [
    ("unsigned", RpmUnsigned, r"rpm hello\.rpm: not signed .* must be signed by 'test'"),
    ("other", RpmSignerError, r"rpm hello\.rpm: DSA/EdDSA header signature: signed by key \w+, "
                              r"which is not in key file 'test'"),
    ("payload", RpmTampered, r"rpm hello\.rpm: payload sha256 is \w+, its signed header says"),
    ("rsa-v3-payload", RpmTampered, r"rpm hello\.rpm: RSA header\+payload signature is BAD"),
    ("header", RpmTampered, r"rpm hello\.rpm: DSA/EdDSA header signature is BAD"),
    ("not-an-rpm", RpmFormatError, r"rpm hello\.rpm: not an RPM \(no lead\)"),
])
def test_bad_packages_are_refused_with_one_line_and_their_own_code(
        rpms: dict[str, Path], keys: Keys, rsa: TestKey, tmp_path: Path, state: str,
        error: type[CompatError], words: str) -> None:
    key = rsa if state.startswith("rsa") else keys.main
    named = tmp_path / "pkg" / "hello.rpm"  # the name the lockfile's URL gives it
    named.parent.mkdir()
    named.write_bytes(rpms[state].read_bytes())
    with pytest.raises(error, match=words) as err:
        check(tmp_path, named, key)
    assert "\n" not in str(err.value)
    assert type(err.value) is error
    assert err.value.exit_code == {RpmUnsigned: 30, RpmSignerError: 31, RpmTampered: 32,
                                   RpmFormatError: 33}[error]


def test_rpm_itself_agrees_on_the_altered_and_the_foreign(
        rpms: dict[str, Path], keys: Keys, tmp_path: Path) -> None:
    """rpmkeys -Kv, with only the pinned key imported: BAD for altered, NOKEY for foreign."""
    assert "Payload SHA256 digest: BAD" in rpm_says(rpms["payload"], keys.main.public, tmp_path)
    assert "Signature, key ID" in (h := rpm_says(rpms["header"], keys.main.public, tmp_path)) and "BAD" in h
    assert "NOKEY" in rpm_says(rpms["other"], keys.main.public, tmp_path)
    # ... and it passes an unsigned package, which is why its exit status alone proves nothing
    assert "Signature" not in rpm_says(rpms["unsigned"], keys.main.public, tmp_path)


def test_a_key_file_holding_the_signer_but_pinning_another_fingerprint_is_refused(
        rpms: dict[str, Path], keys: Keys, tmp_path: Path) -> None:
    """Only the pinned fingerprint counts, not every key in the key file."""
    both = keys.main.public + keys.other.public
    with pytest.raises(RpmSignerError, match=f"signed by {keys.other.fingerprint}, lockfile "
                       f"accepts {keys.main.fingerprint}"):
        check(tmp_path, rpms["other"], keys.main, public=both)


def test_a_cached_rpm_changed_in_place_is_moved_aside(
        rpms: dict[str, Path], keys: Keys, tmp_path: Path) -> None:
    lock = load(lock_for(tmp_path, {"hello": rpms["signed"]}, fingerprint=keys.main.fingerprint))
    store = stored(tmp_path, keys.main.public, [rpms["signed"]])
    flip(store.path(lock.rpms[0].sha256), -1)
    with pytest.raises(HashMismatch, match="rpm signed.rpm has sha256 .* moved it to"):
        rpmsig.check_rpms(lock, store, log=lambda _: None)
    assert not store.path(lock.rpms[0].sha256).exists()


def test_a_cached_rpm_edited_with_its_mtime_put_back_is_hashed_again(
        rpms: dict[str, Path], keys: Keys, tmp_path: Path) -> None:
    """The stamp keys the file as verify's does (ctime, inode, device too), not size and mtime."""
    import os

    lock = load(lock_for(tmp_path, {"hello": rpms["signed"]}, fingerprint=keys.main.fingerprint))
    store = stored(tmp_path, keys.main.public, [rpms["signed"]])
    assert rpmsig.check_rpms(lock, store, log=lambda _: None) == 1
    cached = store.path(lock.rpms[0].sha256)
    before = cached.stat()
    flip(cached, -1)  # same size, other bytes
    os.utime(cached, ns=(before.st_atime_ns, before.st_mtime_ns))  # mtime put back
    assert cached.stat().st_mtime_ns == before.st_mtime_ns and cached.stat().st_size == before.st_size
    with pytest.raises(HashMismatch, match="rpm signed.rpm has sha256 .* moved it to"):
        rpmsig.check_rpms(lock, store, log=lambda _: None)


def test_a_signature_tag_present_twice_is_checked_each_time(
        rpms: dict[str, Path], keys: Keys, tmp_path: Path) -> None:
    """Every signature present must pass: a stranger's 267 before the pinned key's 267 is refused."""
    assert len(signature_packets(rpms["twice"], 267)) == 2
    with pytest.raises(RpmSignerError, match=r"rpm twice\.rpm: DSA/EdDSA header "
                       r"signature \(1 of 2\): signed by key \w+, which is not in key file 'test'"):
        check(tmp_path, rpms["twice"], keys.main)
    assert rpmsig.read_layout(rpms["twice"], "x").signatures[267] == (
        signature_packets(rpms["other"], 267)[0], signature_packets(rpms["signed"], 267)[0])
    # the pinned key's signature twice: both checked, both pass
    twice_ours = with_extra_signature(rpms["signed"], tmp_path / "ours-twice.rpm", 267,
                                      signature_packets(rpms["signed"], 267)[0])
    (tmp_path / "b").mkdir()
    assert check(tmp_path / "b", twice_ours, keys.main) == 1


def test_every_failure_is_named_and_the_first_raised(
        rpms: dict[str, Path], keys: Keys, tmp_path: Path) -> None:
    files = {"a": rpms["unsigned"], "b": rpms["signed"], "c": rpms["other"]}
    lock = load(lock_for(tmp_path, files, fingerprint=keys.main.fingerprint))
    said: list[str] = []
    with pytest.raises(RpmUnsigned, match=r"hello-1\.0-1\.fc20\.noarch\.rpm: not signed.*"
                       r"\(and 1 more failed\)$"):
        rpmsig.check_rpms(lock, stored(tmp_path, keys.main.public, list(files.values())),
                          log=said.append)
    assert said == [s for s in said if s.startswith("Also failed: rpm other.rpm:")] and len(said) == 1


# ------------------------------------------------------------------ targets without a key
def test_a_target_without_rpm_key_and_without_rpms_checks_nothing(
        keys: Keys, tmp_path: Path) -> None:
    lock = load(lock_for(tmp_path, {}, fingerprint=keys.main.fingerprint, rpm_key=None))
    assert rpmsig.check_rpms(lock, Store(tmp_path / "cache"), log=pytest.fail) == 0


def test_a_target_pinning_rpms_without_rpm_key_is_refused(
        rpms: dict[str, Path], keys: Keys, tmp_path: Path) -> None:
    lock = load(lock_for(tmp_path, {"hello": rpms["signed"]}, fingerprint=keys.main.fingerprint,
                         rpm_key=None))
    with pytest.raises(LockfileError, match=r"target 'f' names no rpm_key.*add rpm_key = "):
        rpmsig.check_rpms(lock, Store(tmp_path / "cache"))


def test_rpm_key_must_name_a_key(keys: Keys, tmp_path: Path) -> None:
    with pytest.raises(LockfileError, match=r"target 'f': rpm_key 'nope' is not a \[\[key\]\]"):
        load(lock_for(tmp_path, {}, fingerprint=keys.main.fingerprint, rpm_key="nope"))


def test_the_shipped_lockfile_names_each_targets_signing_key() -> None:
    root = Path(__file__).resolve().parents[2] / "rsrc.lock.toml"
    want = {"fedora20": ("fedora-20-primary", "C7C9A9C89153F20183CE7CBA2EB161FA246110C1"),
            "centos7": ("centos-7", "6341AB2753D78A78A7C27BB124C6A8A7F4A80EB5")}
    for target, (name, fpr) in want.items():
        lock = load(root, target)
        assert lock.target.rpm_key == name
        assert lock.key(name).fingerprints == (fpr,) and lock.key(name).sha256 is None


# ------------------------------------------------------------------ where the pipeline checks
def test_inputs_ready_fetches_and_checks_the_pins_before_the_rpms_stage(
        rpms: dict[str, Path], keys: Keys, tmp_path: Path) -> None:
    key = tmp_path / "key.asc"
    key.write_bytes(keys.main.public)
    path = lock_for(tmp_path, {"hello": rpms["signed"], "other": rpms["other"]},
                    fingerprint=keys.main.fingerprint)
    path.write_text(path.read_text().replace(KEY_URL, f"file://{key}"))
    settings = Settings(lock=path, cache=tmp_path / "cache", out=tmp_path / "out", progress="never")
    said: list[str] = []
    ok = dataclasses.replace(load(path), rpms=load(path).rpms[:1])
    pipeline.inputs_ready(ok, settings, ["rpms"], log=said.append)
    assert said[-1] == "Verified 1 RPM signature by 'test'"
    said.clear()
    pipeline.inputs_ready(ok, settings, ["rpms"], log=said.append)
    assert said == []  # cached and stamped: nothing to do, nothing said
    with pytest.raises(RpmSignerError, match=r"rpm other\.rpm: .*not in key file 'test'"):
        pipeline.inputs_ready(load(path), settings, ["rpms"], log=said.append)


def test_refresh_without_rpm_key_is_refused_before_anything_runs(tmp_path: Path) -> None:
    path = lock_for(tmp_path, {}, fingerprint="0" * 40, rpm_key=None)
    settings = Settings(lock=path, cache=tmp_path / "cache", out=tmp_path / "out")
    with pytest.raises(LockfileError, match="names no rpm_key"):
        pipeline.refresh_rpm_pins(None, load(path), settings)  # type: ignore[arg-type]  # no Docker needed


@pytest.mark.parametrize(("state", "code"), [("unsigned", 30), ("other", 31), ("payload", 32)])
def test_invoke_rpms_exits_with_one_line_and_the_code_of_each_refusal(
        rpms: dict[str, Path], keys: Keys, tmp_path: Path, state: str, code: int) -> None:
    """`invoke rpms` fetches and checks the pins: what a user sees for each bad package."""
    import os
    import subprocess
    import sys

    key = tmp_path / "key.asc"
    key.write_bytes(keys.main.public)
    path = lock_for(tmp_path, {"hello": rpms[state]}, fingerprint=keys.main.fingerprint)
    path.write_text(path.read_text().replace(KEY_URL, f"file://{key}"))
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "COMPATBUILD_CACHE": str(tmp_path / "cache")}
    r = subprocess.run([sys.executable, "-m", "invoke", "rpms", "--lock", str(path)], cwd=root,
                       env=env, capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == code, r.stderr
    [line] = r.stderr.strip().splitlines()
    assert f"rpm {rpms[state].name}: " in line and "Traceback" not in r.stderr
