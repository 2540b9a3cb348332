"""Test profile: local, offline stand-ins for the upstream inputs of the image stages.

The real pipeline builds on Fedora 20 from llvm.org, gnu.org, Kitware and
static.rust-lang.org tarballs. None of those hosts is reachable here, so this package makes
inputs with the same names and layouts from what is: a Debian bullseye (glibc 2.31) base
image made with debootstrap, GNU make 4.4.1 from Debian's make-dfsg source, CMake 3.29.3
from its PyPI wheel, small CMake trees named like LLVM 5.0.2, and a Rust installer packed
from the local rustup toolchain. The same stage Dockerfiles then run on them for real.

It is test support, not a pipeline step: ``tests/conftest.py`` and the ``test-profile``
task import it. It makes nothing with mechanisms of its own: downloads go through
:func:`tasks.inputs.download.fetch` into a :class:`tasks.store.Store`, Docker through
:mod:`tasks.builder.docker_client`, every output through :mod:`tasks.atomic`, and its errors
are :class:`tasks.errors.ProfileError`. The shell scripts and CMake trees it packs are real
files under ``files/``.

One job per submodule: :mod:`.base` (debootstrap and import), :mod:`.sources` (pinned
downloads, the texts in ``files/``, the reproducible :class:`Tar` writer), :mod:`.fixtures`
(make, cmake and llvm tarballs), :mod:`.rust` (Rust installers) and :mod:`.profile` (the
whole profile and its lockfile). Every public name is re-exported here:
``from tasks import profile as tp``.
"""

from __future__ import annotations

from tasks.profile.base import (
    BASE_PACKAGES,
    BASE_REPO,
    IMAGE_PATH,
    LLVM_PACKAGES,
    base_packages,
    base_tag_for,
    build_base_image,
    image_id,
)
from tasks.profile.fixtures import (
    LLVM_TREES,
    LLVM_VERSION,
    make_cmake_tarball,
    make_llvm_tarballs,
    make_make_tarball,
)
from tasks.profile.profile import (
    TARGET_GLIBC,
    TARGET_NAME,
    default_cache_dir,
    prepare_profile,
    write_lockfile,
)
from tasks.profile.rust import (
    RUST_COMPONENTS,
    RUST_TARGET,
    default_toolchain,
    install_sh,
    make_rust_installer,
    make_small_rust_installer,
    rust_manifest,
    rustc_version,
    stub_script,
)
from tasks.profile.sources import (
    CMAKE_VERSION,
    CMAKE_WHEEL,
    DEBIAN_MIRROR,
    FILES,
    MAKE_DEBIAN,
    MAKE_ORIG,
    MAKE_VERSION,
    Tar,
    fetch,
    text,
    tree,
)

__all__ = [
    "BASE_PACKAGES",
    "BASE_REPO",
    "base_tag_for",
    "CMAKE_VERSION",
    "CMAKE_WHEEL",
    "DEBIAN_MIRROR",
    "default_toolchain",
    "FILES",
    "IMAGE_PATH",
    "LLVM_PACKAGES",
    "LLVM_TREES",
    "LLVM_VERSION",
    "MAKE_DEBIAN",
    "MAKE_ORIG",
    "MAKE_VERSION",
    "RUST_COMPONENTS",
    "RUST_TARGET",
    "TARGET_GLIBC",
    "TARGET_NAME",
    "Tar",
    "base_packages",
    "build_base_image",
    "default_cache_dir",
    "fetch",
    "image_id",
    "install_sh",
    "make_cmake_tarball",
    "make_llvm_tarballs",
    "make_make_tarball",
    "make_rust_installer",
    "make_small_rust_installer",
    "prepare_profile",
    "rust_manifest",
    "rustc_version",
    "stub_script",
    "text",
    "tree",
    "write_lockfile",
]
