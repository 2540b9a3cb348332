"""Test-profile Rust installers, in the layout of Rust's combined offline installer.

:func:`make_rust_installer` packs rustc, cargo and rust-std from a local rustup toolchain
(cached by the toolchain's files); :func:`make_small_rust_installer` writes a tiny one whose
``rustc`` and ``cargo`` only print a version. Both carry this module's ``install.sh``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path

from filelock import FileLock

from tests.profile.sources import ProfileError, Tar

RUST_TARGET = "x86_64-unknown-linux-gnu"
RUST_COMPONENTS = ("rustc", "cargo", f"rust-std-{RUST_TARGET}")
DEFAULT_TOOLCHAIN = Path.home() / ".rustup" / "toolchains" / f"stable-{RUST_TARGET}"


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
    tar.file(f"{top}/install.sh", INSTALL_SH.encode(), 0o755)
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
    toolchain: Path = DEFAULT_TOOLCHAIN,
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
    """
    real = rustc_version(toolchain)
    version = version or real.split()[0]
    name = f"rust-{version}-{RUST_TARGET}"
    entries = rust_manifest(toolchain)
    cached = None
    if cache is not None:
        key = hashlib.sha256(
            json.dumps(
                [
                    INSTALL_SH,
                    real,
                    version,
                    level,
                    str(toolchain),
                    [
                        (rel, (toolchain / rel).stat().st_size, (toolchain / rel).stat().st_mtime_ns)
                        for comp in entries.values()
                        for _, rel in comp
                    ],
                ]
            ).encode()
        ).hexdigest()[:16]
        cached = cache / key / f"{name}.tar.gz"
        if cached.exists():
            print(f"Using cached {cached}")
            return _copy_into(cached, dest)
    print(f"Packing {name}.tar.gz from {toolchain}")
    tar = _installer_skeleton(name, entries, real)
    for comp, comp_entries in entries.items():
        tar.file(f"{name}/{comp}/manifest.in", "".join(f"{k}:{rel}\n" for k, rel in comp_entries).encode())
        for _, rel in comp_entries:
            _add_tree(tar, f"{name}/{comp}/{rel}", toolchain / rel)
    if cached is None:
        return tar.write(dest / f"{name}.tar.gz", compression="gz", level=level)
    with FileLock(str(cached.parent) + ".lock"):
        if not cached.exists():
            tar.write(cached, compression="gz", level=level)
    return _copy_into(cached, dest)


def _copy_into(src: Path, dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    out, part = dest / src.name, dest / (src.name + ".part")
    try:
        try:
            os.link(src, part)
        except OSError:
            shutil.copyfile(src, part)
        os.replace(part, out)
    finally:
        part.unlink(missing_ok=True)
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
        ("rustc", "file", "bin/rustc", STUB_SCRIPT.format(tool="rustc", version=version)),
        ("cargo", "file", "bin/cargo", STUB_SCRIPT.format(tool="cargo", version=version)),
        (std, "dir", f"lib/rustlib/{RUST_TARGET}/lib", "compatbuild test profile: no standard library\n"),
    ):
        tar.file(f"{name}/{comp}/manifest.in", f"{kind}:{rel}\n".encode())
        if kind == "file":
            tar.file(f"{name}/{comp}/{rel}", body.encode(), 0o755)
        else:
            tar.file(f"{name}/{comp}/{rel}/README.compatbuild", body.encode())
    return tar.write(dest / f"{name}.tar.gz", compression="gz", level=9)


# ------------------------------------------------------------------ texts of the installers

INSTALL_SH = r"""#!/bin/sh
# Offline installer of the compatbuild test profile (written for it; not rust-installer's).
# Reads the layout of Rust's combined installer: the file 'components' names one directory
# per component, whose manifest.in lists 'file:PATH' and 'dir:PATH' entries to copy under
# the prefix.
set -eu

usage() {
    echo "usage: install.sh [--prefix=DIR] [--components=a,b] [--without=a,b] [--disable-ldconfig]"
}
die() {
    echo "install.sh: error: $*" >&2
    exit 1
}
in_list() {
    case ",$2," in *",$1,"*) return 0 ;; esac
    return 1
}

prefix=/usr/local
components=
without=
ldconfig=yes
for arg in "$@"; do
    case "$arg" in
        --prefix=*) prefix=${arg#--prefix=} ;;
        --components=*) components=${arg#--components=} ;;
        --without=*) without=${arg#--without=} ;;
        --disable-ldconfig) ldconfig=no ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; die "unknown option: $arg" ;;
    esac
done
[ -n "$prefix" ] || die "--prefix is empty"

src=$(cd "$(dirname "$0")" && pwd)
available=$(tr '\n' ',' < "$src/components")
for name in $(echo "$components,$without" | tr ',' ' '); do
    in_list "$name" "$available" || die "unknown component: $name (this installer has: ${available%,})"
done

mkdir -p "$prefix/lib/rustlib"
installed=0
for comp in $(echo "$available" | tr ',' ' '); do
    if [ -n "$components" ] && ! in_list "$comp" "$components"; then continue; fi
    if in_list "$comp" "$without"; then continue; fi
    echo "install: installing component '$comp'"
    record="$prefix/lib/rustlib/manifest-$comp"
    : > "$record"
    while IFS= read -r entry || [ -n "$entry" ]; do
        path=${entry#*:}
        case "$entry" in
            file:*)
                mkdir -p "$(dirname "$prefix/$path")"
                cp -P "$src/$comp/$path" "$prefix/$path"
                echo "install: $prefix/$path" ;;
            dir:*)
                mkdir -p "$prefix/$path"
                cp -R "$src/$comp/$path/." "$prefix/$path/"
                echo "install: $prefix/$path/" ;;
            *) die "bad entry in $comp/manifest.in: $entry" ;;
        esac
        echo "$entry" >> "$record"
    done < "$src/$comp/manifest.in"
    if ! grep -qx "$comp" "$prefix/lib/rustlib/components" 2>/dev/null; then
        echo "$comp" >> "$prefix/lib/rustlib/components"
    fi
    installed=$((installed + 1))
done
[ "$installed" -gt 0 ] || die "no component selected"
cp "$src/rust-installer-version" "$prefix/lib/rustlib/rust-installer-version"
if [ "$ldconfig" = yes ] && command -v ldconfig > /dev/null 2>&1; then
    ldconfig || echo "install.sh: warning: ldconfig failed" >&2
fi
echo "install: installed $installed component(s) under $prefix"
"""

STUB_SCRIPT = """#!/bin/sh
# compatbuild test profile: a stub {tool}, not a compiler.
echo "{tool} {version} (compatbuild test profile stub)"
"""
