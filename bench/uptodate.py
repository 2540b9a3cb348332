"""The up-to-date check on a crate of 5,000 source files (2 KiB each): with nothing changed (one
``lstat`` per file) and with every file touched (each hashed again, the same bytes, no container),
against their floors measured interleaved: a bare walk that lstats every file, and one that also
reads and hashes every file (sha256, as the check does). Issue 16 §3: what the design costs per file."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

from bench import harness as h
from tasks.backends import uptodate

TITLE = "the up-to-date check on a crate of 5,000 files"
SUMMARY = "the build's up-to-date check, nothing changed and every file touched, vs a bare walk that lstats or hashes"
FILES = 5000


def run(work: Path) -> list[h.Row]:
    root = work / "crate"
    for i in range(FILES):
        folder = root / "src" / f"m{i // 100}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"f{i}.rs").write_bytes(os.urandom(1024).hex().encode())
    (root / "Cargo.toml").write_text('[package]\nname = "big"\nversion = "0.1.0"\n')
    target = work / "target"
    target.mkdir()
    check = uptodate.Check("image", ("cargo", "build"), (root,), work / "out", (), target, True)

    def check_and_stamp() -> None:
        inputs, files = uptodate.material(check)
        uptodate.record(target, inputs, [], files)

    first = h.timed(check_and_stamp)  # every file hashed

    def walk(hash_them: bool) -> None:
        for folder, _, names in os.walk(root):
            for name in names:
                path = os.path.join(folder, name)
                os.lstat(path)
                if hash_them:
                    with open(path, "rb") as f:
                        hashlib.sha256(f.read()).hexdigest()

    def touched() -> float:
        now = time.time()
        for p in root.rglob("*.rs"):
            os.utime(p, (now, now))
        return h.timed(check_and_stamp)

    got = h.interleave(7, same=lambda: h.timed(lambda: uptodate.material(check)),
                       lstat=lambda: h.timed(lambda: walk(False)), touched=touched,
                       hashed=lambda: h.timed(lambda: walk(True)))

    def per_file(seconds: float) -> str:
        return f"{seconds:.3f} s ({seconds / FILES * 1e6:.0f} µs per file)"

    walked, hashed = f"a walk that lstats each file {per_file(got['lstat'])}", \
        f"a walk that lstats and hashes each file {per_file(got['hashed'])}"
    return [
        ("up-to-date check, nothing changed", per_file(got["same"]), walked,
         f"{got['same'] / got['lstat']:.2f}x the walk"),
        ("up-to-date check and its stamp, every file touched (same bytes: hashed, no container)",
         per_file(got["touched"]), hashed, f"{got['touched'] / got['hashed']:.2f}x the walk"),
        ("up-to-date check and its stamp, the first (every file hashed)", per_file(first), hashed,
         f"{first / got['hashed']:.2f}x the walk"),
    ]
