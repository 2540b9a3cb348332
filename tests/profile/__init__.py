"""Test profile: local, offline stand-ins for the upstream inputs of the image stages.

The real pipeline builds on Fedora 20 from llvm.org, gnu.org, Kitware and
static.rust-lang.org tarballs. None of those hosts is reachable here, so this package makes
inputs with the same names and layouts from what is: a Debian bullseye (glibc 2.31) base
image made with debootstrap, GNU make 4.4.1 from Debian's make-dfsg source, CMake 3.29.3
from its PyPI wheel, small CMake trees named like LLVM 5.0.2, and a Rust installer packed
from the local rustup toolchain. The same stage Dockerfiles then run on them for real.

One job per submodule: :mod:`.base` (debootstrap and ``docker import``), :mod:`.sources`
(pinned downloads, the reproducible :class:`Tar` writer), :mod:`.fixtures` (make, cmake and
llvm tarballs), :mod:`.rust` (Rust installers) and :mod:`.profile` (the whole profile and
its lockfile). Every public name is re-exported here: ``from tasks import testprofile``.
"""

from __future__ import annotations

from tests.profile.base import (
    BASE_PACKAGES,
    BASE_TAG,
    IMAGE_PATH,
    LLVM_PACKAGES,
    base_packages,
    build_base_image,
    image_id,
)
from tests.profile.fixtures import (
    CFE_TREE,
    LLD_TREE,
    LLVM_TREE,
    LLVM_VERSION,
    MAKE_DOC_MAKEFILE_IN,
    make_cmake_tarball,
    make_llvm_tarballs,
    make_make_tarball,
)
from tests.profile.profile import (
    TARGET_GLIBC,
    TARGET_NAME,
    default_cache_dir,
    prepare_profile,
    write_lockfile,
)
from tests.profile.rust import (
    DEFAULT_TOOLCHAIN,
    INSTALL_SH,
    RUST_COMPONENTS,
    RUST_TARGET,
    STUB_SCRIPT,
    make_rust_installer,
    make_small_rust_installer,
    rust_manifest,
    rustc_version,
)
from tests.profile.sources import (
    CMAKE_VERSION,
    CMAKE_WHEEL,
    DEBIAN_MIRROR,
    MAKE_DEBIAN,
    MAKE_ORIG,
    MAKE_VERSION,
    ProfileError,
    Source,
    Tar,
    cmake_wheel,
    fetch,
    sha256_file,
)

__all__ = [
    "BASE_PACKAGES",
    "BASE_TAG",
    "CFE_TREE",
    "CMAKE_VERSION",
    "CMAKE_WHEEL",
    "DEBIAN_MIRROR",
    "DEFAULT_TOOLCHAIN",
    "IMAGE_PATH",
    "INSTALL_SH",
    "LLD_TREE",
    "LLVM_PACKAGES",
    "LLVM_TREE",
    "LLVM_VERSION",
    "MAKE_DEBIAN",
    "MAKE_DOC_MAKEFILE_IN",
    "MAKE_ORIG",
    "MAKE_VERSION",
    "ProfileError",
    "RUST_COMPONENTS",
    "RUST_TARGET",
    "STUB_SCRIPT",
    "Source",
    "TARGET_GLIBC",
    "TARGET_NAME",
    "Tar",
    "base_packages",
    "build_base_image",
    "cmake_wheel",
    "default_cache_dir",
    "fetch",
    "image_id",
    "make_cmake_tarball",
    "make_llvm_tarballs",
    "make_make_tarball",
    "make_rust_installer",
    "make_small_rust_installer",
    "prepare_profile",
    "rust_manifest",
    "rustc_version",
    "sha256_file",
    "write_lockfile",
]
