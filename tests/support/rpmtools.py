"""Test helpers: real RPMs made by rpmbuild and signed by rpmsign with a session's keys.

Debian's ``rpm`` package (installed by .ci/run) has rpmbuild, rpmsign and rpmkeys. rpmsign
runs gpg in the keyring's home; ``--rpmv3`` adds the header+payload signature that RPMs
made before rpm 4.14 (Fedora 20's, CentOS 7's) carry beside the header signature.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import textwrap
from pathlib import Path

from tests.support.gpgkeys import TestKey


def small_rpm(work: Path, name: str, files: dict[str, bytes], *, version: str = "1.0",
              release: str = "1.fc20", arch: str = "noarch") -> Path:
    """An unsigned RPM holding ``files`` (path -> bytes), built by rpmbuild."""
    root = work / f"root-{name}-{version}"
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    spec = work / f"{name}.spec"
    spec.write_text(textwrap.dedent(f"""\
        Name: {name}
        Version: {version}
        Release: {release}
        Summary: a test package
        License: MIT
        BuildArch: {arch}
        AutoReqProv: no
        %description
        test
        %install
        cp -a {root}/. %{{buildroot}}/
        %files
        """) + "".join(f"/{rel}\n" for rel in files))
    top = work / "top"
    subprocess.run(["rpmbuild", "-bb", "--quiet", "--define", f"_topdir {top}",
                    "--define", "__os_install_post %{nil}", "--define", "_build_id_links none",
                    str(spec)], check=True, capture_output=True)
    [rpm] = (top / "RPMS").rglob(f"{name}-{version}-{release}.{arch}.rpm")
    return rpm


def signed_copy(rpm: Path, dest: Path, key: TestKey, home: Path, *, v3: bool = False, at: str = "") -> Path:
    """A copy of ``rpm`` at ``dest`` signed by ``key`` (its secret half in ``home``), at the
    time ``at`` (gpg's ``--faked-system-time``, e.g. ``20200601T000000``) when given."""
    shutil.copyfile(rpm, dest)
    when = ["--define", f"_gpg_sign_cmd_extra_args --faked-system-time {at}!"] if at else []
    subprocess.run(["rpmsign", "--addsign", *(["--rpmv3"] if v3 else []),
                    "--define", "__gpg /usr/bin/gpg", "--define", f"_gpg_name {key.fingerprint}", *when,
                    str(dest)], check=True, capture_output=True,
                   env={**os.environ, "GNUPGHOME": str(home)})
    return dest


def flip(path: Path, offset: int) -> Path:
    """Flip one bit of the byte at ``offset`` (negative: from the end)."""
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))
    return path


def rpm_says(rpm: Path, public: bytes, work: Path) -> str:
    """rpm's own verdict (``rpmkeys -Kv``) with only ``public`` in a throwaway rpm database."""
    db = work / "rpmdb"
    if not db.exists():
        db.mkdir()
        key = work / "key.asc"
        key.write_bytes(public)
        subprocess.run(["rpmkeys", "--dbpath", str(db), "--import", str(key)], check=True,
                       capture_output=True)
    proc = subprocess.run(["rpmkeys", "--dbpath", str(db), "-Kv", str(rpm)],
                          capture_output=True, text=True, check=False)
    return proc.stdout + proc.stderr


def with_extra_signature(rpm: Path, dest: Path, tag: int, packet: bytes) -> Path:
    """A copy of ``rpm`` whose signature header holds one more entry ``tag`` (BIN) with
    ``packet``, placed before the entries already there: a tag may then occur twice."""
    data = rpm.read_bytes()
    start = 96  # after the lead
    count, size = struct.unpack(">II", data[start + 8:start + 16])
    index = data[start + 16:start + 16 + 16 * count]
    store = data[start + 16 + 16 * count:start + 16 + 16 * count + size]
    end = start + 16 + 16 * count + size
    rest = data[end + (-end % 8):]  # the header and payload, after the old padding
    entry = struct.pack(">iIiI", tag, 7, len(store), len(packet))  # 7: RPM_BIN_TYPE
    new_store = store + packet
    head = data[start:start + 8] + struct.pack(">II", count + 1, len(new_store))
    section = head + entry + index + new_store
    pad = b"\0" * (-(start + len(section)) % 8)
    dest.write_bytes(data[:start] + section + pad + rest)
    return dest


def signature_packets(rpm: Path, tag: int) -> list[bytes]:
    """The bytes of every ``tag`` entry in ``rpm``'s signature header, in index order."""
    data = rpm.read_bytes()
    count, size = struct.unpack(">II", data[104:112])
    store = data[112 + 16 * count:112 + 16 * count + size]
    out = []
    for i in range(count):
        t, _typ, offset, n = struct.unpack(">iIiI", data[112 + 16 * i:128 + 16 * i])
        if t == tag:
            out.append(store[offset:offset + n])
    return out
