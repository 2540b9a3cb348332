"""The docker backend's route for an aarch64 target: cross-link in the x86_64 builder image.

    <cross_from>'s builder image (x86_64: its gcc for build scripts, the pinned Rust 1.90.0)
      └─► stage cross (docker/cross-aarch64): + the pinned rust-std-1.90.0-aarch64-unknown-linux-gnu,
          + the target's aarch64 RPMs (glibc, glibc-devel, kernel-headers, libgcc, signed by the
          AltArch key) unpacked into SYSROOT
      └─► cargo build --target aarch64-unknown-linux-gnu, linked by the toolchain's own rust-lld
          (``-C linker=rust-lld -C linker-flavor=ld.lld``) against SYSROOT alone: no C driver

The flags (:func:`cargo_env`) are given to cargo when it runs, not baked into the image, so
the same ones are tried on this machine against an arm64 Debian sysroot
(tests/backends/test_cross.py): the library it links loads under qemu on bullseye's 2.31.

Why this route, not the target's arm64 image under qemu binfmt: the image's stages (rpms,
rust, cargo itself) would all run emulated, ~5-20x slower, and binfmt_misc must be
registered on the daemon's host (a privileged, machine-wide change; not on this machine);
here only the link is aarch64's, everything else is centos7's x86_64 image, shared. What it
cannot do is compile C for aarch64: there is no cross gcc in the image. A build script that
runs the ``cc`` crate for the target gets :data:`NO_CC` as its compiler, which says
:data:`MARKER`; :func:`cross_error` turns cargo's failure into one line naming the zig
backend, whose ``zig cc`` cross-compiles C (``--backend zig``).
"""

from __future__ import annotations

from tasks import arches
from tasks.arches import Arch
from tasks.errors import CrossCompileError
from tasks.inputs.lockfile import Lockfile

ROOT = "/opt/compatbuild"
SYSROOT = f"{ROOT}/sysroot/aarch64"  # the target's RPMs, unpacked by the cross stage
LINKDIR = f"{ROOT}/cross-lib/aarch64"  # libgcc_s.so -> SYSROOT's libgcc_s.so.1 (rustc asks for -lgcc_s)
NO_CC = f"{ROOT}/no-cross-cc"  # the C compiler a build script gets for the target: it only says MARKER
MARKER = "compatbuild: no C cross compiler for"
STD_ARTIFACT = "rust-std-aarch64"  # the lockfile artifact the cross stage installs


def triple_env(triple: str) -> str:
    """cargo's spelling of a triple in variable names: ``AARCH64_UNKNOWN_LINUX_GNU``."""
    return triple.upper().replace("-", "_")


def cargo_env(arch: Arch, *, sysroot: str = SYSROOT, linkdir: str = LINKDIR, no_cc: str = NO_CC) -> dict[str, str]:
    """What cargo runs with to build for ``arch`` in the cross stage (or against any ``sysroot``)."""
    t = arch.rust_triple
    search = [f"-C link-arg=-L{sysroot}/{d}" for d in arch.lib_dirs] + [f"-C link-arg=-L{linkdir}"]
    flags = ["-C linker-flavor=ld.lld", f"-C link-arg=--sysroot={sysroot}", *search]
    cc_name = t.replace("-", "_")
    return {
        f"CARGO_TARGET_{triple_env(t)}_LINKER": "rust-lld",  # rustc finds it beside itself
        f"CARGO_TARGET_{triple_env(t)}_RUSTFLAGS": " ".join(flags),
        f"CC_{cc_name}": no_cc, f"CXX_{cc_name}": no_cc,  # what the cc crate runs for the target
    }


def cargo_target(lock: Lockfile) -> list[str]:
    """The ``--target`` cargo builds for a cross target ([] for a native one)."""
    if not lock.target.cross_from:
        return []
    return ["--target", arches.get(lock.target.arch).rust_triple]


def environment(lock: Lockfile) -> dict[str, str]:
    """The cross variables for ``lock``'s target in the cross stage ({} for a native one)."""
    return cargo_env(arches.get(lock.target.arch)) if lock.target.cross_from else {}


def cross_error(crate: str, lock: Lockfile, stderr: str) -> CrossCompileError | None:
    """The one-line error when cargo failed because a build script compiled C for the target."""
    if MARKER not in stderr:
        return None
    arch = arches.get(lock.target.arch)
    return CrossCompileError(
        f"{crate} compiles C code for {arch.rust_triple} (a build script runs a C compiler, such as the cc "
        f"crate), and the docker backend only cross-links {lock.target.name} with rust-lld; build it with "
        "`--backend zig`, whose zig cc cross-compiles C")
