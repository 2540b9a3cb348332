"""Test-profile Rust installers, in the layout of Rust's combined offline installer.

:func:`make_rust_installer` packs rustc, cargo and rust-std from a local rustup toolchain
(cached by the toolchain's files); :func:`make_small_rust_installer` writes a tiny one whose
``rustc`` and ``cargo`` (``files/rust/stub.sh``) only print a version. Both carry the
profile's own ``files/rust/install.sh``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path

from tasks.atomic import ensure_file, staged
from tasks.errors import ProfileError
from tasks.profile.sources import Tar, text
from tasks.store import file_identity

RUST_TARGET = "x86_64-unknown-linux-gnu"
RUST_COMPONENTS = ("rustc", "cargo", f"rust-std-{RUST_TARGET}")


def default_toolchain() -> Path:
    """The stable x86_64 toolchain in rustup's home: ``$RUSTUP_HOME``, else ``~/.rustup`` (rustup's own rule)."""
    home = Path(os.environ.get("RUSTUP_HOME") or Path.home() / ".rustup").expanduser()
    return home / "toolchains" / f"stable-{RUST_TARGET}"


def install_sh() -> str:
    """The installer script every profile Rust installer carries (``files/rust/install.sh``)."""
    return text("rust/install.sh")


def stub_script(tool: str, version: str) -> str:
    """A stub ``rustc`` or ``cargo`` that only prints its version (``files/rust/stub.sh``)."""
    return text("rust/stub.sh").replace("@TOOL@", tool).replace("@VERSION@", version)


def rustc_version(toolchain: Path) -> str:
    """``rustc --version`` of ``toolchain`` without the leading "rustc ", e.g. "1.95.0 (… 2026-04-14)"."""
    try:
        out = subprocess.run(
            [str(toolchain / "bin" / "rustc"), "--version"], capture_output=True, text=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        raise ProfileError(f"cannot run rustc of toolchain {toolchain}: {exc}") from exc
    return out.strip().removeprefix("rustc ")


def rust_manifest(toolchain: Path) -> dict[str, list[tuple[str, str]]]:
    """The ``(kind, path)`` manifest entries of each packed component, relative to ``toolchain``.

    Only what ``cargo build`` needs: no docs, man pages, gdb scripts, clippy or rustfmt.
    """
    lib = toolchain / "lib"
    libs = sorted(p.name for p in lib.glob("*.so*") if p.is_file()) if lib.is_dir() else []
    rustc = [
        ("file", "bin/rustc"),
        ("file", "bin/rustdoc"),
        *(("file", f"lib/{n}") for n in libs),
        ("dir", f"lib/rustlib/{RUST_TARGET}/bin"),
    ]
    record = lib / "rustlib" / f"manifest-rust-std-{RUST_TARGET}"
    if record.is_file():  # rustup's own list: leaves out rustc-dev's rlibs if that is installed
        std = [("file", line[5:]) for line in record.read_text().splitlines() if line.startswith("file:")]
    else:
        std = [("dir", f"lib/rustlib/{RUST_TARGET}/lib")]
    entries = {"rustc": rustc, "cargo": [("file", "bin/cargo")], f"rust-std-{RUST_TARGET}": std}
    for kind, rel in (e for comp in entries.values() for e in comp):
        if not (toolchain / rel).is_file() and not (kind == "dir" and (toolchain / rel).is_dir()):
            raise ProfileError(f"toolchain {toolchain} lacks {rel}")
    return entries


def _installer_skeleton(top: str, components: Iterable[str], version_line: str) -> Tar:
    tar = Tar()
    tar.file(f"{top}/install.sh", install_sh().encode(), 0o755)
    tar.file(f"{top}/components", "".join(f"{c}\n" for c in components).encode())
    tar.file(f"{top}/rust-installer-version", b"3\n")
    tar.file(f"{top}/version", f"{version_line}\n".encode())
    return tar


def _add_tree(tar: Tar, name: str, path: Path) -> None:
    if path.is_symlink():
        tar.symlink(name, os.readlink(path))
    elif path.is_dir():
        tar.dir(name)
        for child in sorted(path.iterdir()):
            _add_tree(tar, f"{name}/{child.name}", child)
    else:
        tar.file(name, path, 0o755 if path.stat().st_mode & 0o111 else 0o644)


def make_rust_installer(
    dest: Path,
    *,
    toolchain: Path | None = None,
    version: str | None = None,
    level: int = 1,
    cache: Path | None = None,
) -> Path:
    """Write ``rust-<version>-x86_64-unknown-linux-gnu.tar.gz`` from a local rustup toolchain.

    The layout is that of Rust's combined offline installer (install.sh, components,
    rust-installer-version, one directory with a manifest.in per component) holding rustc,
    cargo and rust-std only. ``version`` names the tarball and defaults to the toolchain's
    own; the ``version`` file inside always tells the truth. With ``cache``, an identical
    earlier pack (same toolchain files, version, level, install.sh) is copied instead.
    ``toolchain`` defaults to :func:`default_toolchain`.
    """
    toolchain = toolchain or default_toolchain()
    real = rustc_version(toolchain)
    version = version or real.split()[0]
    name = f"rust-{version}-{RUST_TARGET}"
    entries = rust_manifest(toolchain)
    cached = None
    if cache is not None:
        key = hashlib.sha256(
            json.dumps(
                [
                    install_sh(),
                    real,
                    version,
                    level,
                    str(toolchain),
                    [
                        (rel, *file_identity(toolchain / rel))  # as every re-check keys a file
                        for comp in entries.values()
                        for _, rel in comp
                    ],
                ]
            ).encode()
        ).hexdigest()[:16]
        cached = cache / key / f"{name}.tar.gz"
        if cached.is_file():
            print(f"Using cached {cached}")
            return _link_into(cached, dest)

    def pack(tmp: Path) -> None:
        print(f"Packing {name}.tar.gz from {toolchain}")
        tar = _installer_skeleton(name, entries, real)
        for comp, comp_entries in entries.items():
            tar.file(f"{name}/{comp}/manifest.in", "".join(f"{k}:{rel}\n" for k, rel in comp_entries).encode())
            for _, rel in comp_entries:
                _add_tree(tar, f"{name}/{comp}/{rel}", toolchain / rel)
        tar.write_into(tmp, compression="gz", level=level)

    if cached is None:
        with staged(dest / f"{name}.tar.gz") as tmp:
            pack(tmp)
        return dest / f"{name}.tar.gz"
    ensure_file(cached, pack)
    return _link_into(cached, dest)


def _link_into(src: Path, dest: Path) -> Path:
    """``dest/<src.name>``, a hard link to ``src`` where the filesystem allows, else a copy."""
    out = dest / src.name
    with staged(out) as tmp:
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)
    return out


def make_small_rust_installer(dest: Path, version: str) -> Path:
    """Write a tiny installer of the same layout whose ``rustc``/``cargo`` only print a version.

    Cheap to make and install: tests use it to show a new Rust input rebuilds only the
    stages from rust on.
    """
    name = f"rust-{version}-{RUST_TARGET}"
    std = f"rust-std-{RUST_TARGET}"
    tar = _installer_skeleton(name, RUST_COMPONENTS, f"{version} (compatbuild test profile stub)")
    for comp, kind, rel, body in (
        ("rustc", "file", "bin/rustc", stub_script("rustc", version)),
        ("cargo", "file", "bin/cargo", stub_script("cargo", version)),
        (std, "dir", f"lib/rustlib/{RUST_TARGET}/lib", "compatbuild test profile: no standard library\n"),
    ):
        tar.file(f"{name}/{comp}/manifest.in", f"{kind}:{rel}\n".encode())
        if kind == "file":
            tar.file(f"{name}/{comp}/{rel}", body.encode(), 0o755)
        else:
            tar.file(f"{name}/{comp}/{rel}/README.compatbuild", body.encode())
    return tar.write(dest / f"{name}.tar.gz", compression="gz", level=9)
