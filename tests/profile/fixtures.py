"""Test-profile make, cmake and llvm tarballs, named and laid out like the upstream ones.

GNU make 4.4.1 is repacked from Debian's make-dfsg source, CMake 3.29.3 from its PyPI
wheel into Kitware's binary layout, and llvm, cfe and lld 5.0.2 are small CMake trees whose
texts are at the end of this module. All are written by :class:`Tar`, so they are
reproducible byte for byte.
"""

from __future__ import annotations

import tarfile
import zipfile
from pathlib import Path

from tests.profile.sources import (
    CMAKE_VERSION,
    MAKE_DEBIAN,
    MAKE_ORIG,
    MAKE_VERSION,
    ProfileError,
    Tar,
    cmake_wheel,
    fetch,
)

LLVM_VERSION = "5.0.2"


def make_make_tarball(dest: Path, cache: Path) -> Path:
    """Write ``make-4.4.1.tar.gz``: GNU make 4.4.1 from Debian's make-dfsg orig tarball.

    Debian ships upstream's generated ``configure`` but strips the GFDL manual (``doc/``)
    that ``Makefile.in`` still recurses into; a no-op ``doc/Makefile.in`` and Debian's own
    ``make.1`` fill that gap, so ``./configure && make && make install`` works unchanged.
    Upstream mtimes are kept so autotools never thinks its outputs are stale.
    """
    orig, debian = fetch(MAKE_ORIG, cache), fetch(MAKE_DEBIAN, cache)
    top = f"make-{MAKE_VERSION}"
    tar, newest = Tar(), 0
    with tarfile.open(orig, "r:xz") as src:
        for member in src:
            if member.name != top and not member.name.startswith(top + "/"):
                raise ProfileError(f"{orig.name}: unexpected member {member.name}")
            newest = max(newest, int(member.mtime))
            if member.isdir():
                tar.dir(member.name, member.mode, int(member.mtime))
            elif member.issym():
                tar.symlink(member.name, member.linkname, int(member.mtime))
            elif member.isfile():
                data = src.extractfile(member)
                assert data is not None
                tar.file(member.name, data.read(), member.mode, int(member.mtime))
    with tarfile.open(debian, "r:xz") as src:
        manpage = src.extractfile("debian/make.1")
        assert manpage is not None
        tar.file(f"{top}/doc/make.1", manpage.read(), 0o644, newest)
    tar.file(f"{top}/doc/Makefile.in", MAKE_DOC_MAKEFILE_IN.encode(), 0o644, newest)
    return tar.write(dest / f"{top}.tar.gz", compression="gz", level=9)


def make_cmake_tarball(dest: Path, cache: Path, *, level: int = 6) -> Path:
    """Write ``cmake-3.29.3-linux-x86_64.tar.gz`` laid out like Kitware's binary tarball."""
    top = f"cmake-{CMAKE_VERSION}-linux-x86_64"
    tar = Tar()
    tar.dir(top)
    with zipfile.ZipFile(cmake_wheel(cache)) as wheel:
        for info in wheel.infolist():
            rel = info.filename.removeprefix("cmake/data/")
            if rel == info.filename or not rel.strip("/"):
                continue
            mode = (info.external_attr >> 16) & 0o7777
            if info.is_dir():
                tar.dir(f"{top}/{rel}", mode or 0o755)
            else:
                tar.file(f"{top}/{rel}", wheel.read(info), mode or 0o644)
    return tar.write(dest / f"{top}.tar.gz", compression="gz", level=level)


def make_llvm_tarballs(dest: Path) -> tuple[Path, Path, Path]:
    """Write llvm, cfe and lld 5.0.2 ``.src.tar.xz`` stand-ins: small CMake trees.

    Built in place of the real trees (cfe as llvm/tools/clang, lld as llvm/tools/lld), they
    compile a C++ and a C program and install ``clang``, ``clang++``, ``lld`` and
    ``ld.lld`` as links to the base image's clang-11 and lld-11.
    """
    trees = {"llvm": LLVM_TREE, "cfe": CFE_TREE, "lld": LLD_TREE}
    out = []
    for name, files in trees.items():
        top = f"{name}-{LLVM_VERSION}.src"
        tar = Tar()
        tar.dir(top)
        for rel, content in files.items():
            tar.file(f"{top}/{rel}", content.encode())
        out.append(tar.write(dest / f"{top}.tar.xz", compression="xz", level=6))
    return out[0], out[1], out[2]


# ------------------------------------------------------------------ texts of the fixtures

MAKE_DOC_MAKEFILE_IN = """\
# compatbuild test profile: Debian's make-dfsg removes the GFDL manual (doc/), which
# Makefile.in still recurses into. Every target here does nothing.
all:
\t@:
.DEFAULT:
\t@:
"""

LLVM_TREE = {
    "CMakeLists.txt": r"""# compatbuild test profile: a stand-in for the LLVM 5.0.2 source tree, not LLVM.
# Configured, built and installed like the real tree; it compiles and runs a C++ program,
# and builds tools/clang and tools/lld when the cfe and lld stand-ins were moved there.
# CMake ignores -D options it does not use (with a warning).
cmake_minimum_required(VERSION 3.14)
project(LLVM VERSION 5.0.2 LANGUAGES C CXX)

set(LLVM_TARGETS_TO_BUILD "X86" CACHE STRING "Targets to build (recorded only)")
string(REPLACE ";" "," profile_targets "${LLVM_TARGETS_TO_BUILD}")
message(STATUS "compatbuild test profile: LLVM ${PROJECT_VERSION} stand-in, targets ${profile_targets}")

add_executable(llvm-profile-version tools/llvm-profile-version/llvm-profile-version.cpp)
target_compile_definitions(llvm-profile-version PRIVATE
  "PROFILE_VERSION=\"${PROJECT_VERSION}\"" "PROFILE_TARGETS=\"${profile_targets}\"")
add_custom_command(TARGET llvm-profile-version POST_BUILD COMMAND llvm-profile-version)
install(TARGETS llvm-profile-version RUNTIME DESTINATION bin)

foreach(sub clang lld)
  if(EXISTS "${CMAKE_CURRENT_SOURCE_DIR}/tools/${sub}/CMakeLists.txt")
    add_subdirectory(tools/${sub})
  endif()
endforeach()
""",
    "tools/llvm-profile-version/llvm-profile-version.cpp": r"""// compatbuild test profile: the llvm stage's
// C++ compiler and linker work.
#include <iostream>
#include <string>

int main() {
  std::string line = std::string("LLVM ") + PROFILE_VERSION;
  line += " (compatbuild test profile stand-in), targets: ";
  line += PROFILE_TARGETS;
  std::cout << line << std::endl;
  return 0;
}
""",
}

CFE_TREE = {
    "CMakeLists.txt": r"""# compatbuild test profile: a stand-in for cfe (clang) 5.0.2, not clang.
# bin/clang and bin/clang++ are links to the base image's clang-11, a real driver.
find_program(CLANG_PROFILE_CLANG NAMES clang-11)
find_program(CLANG_PROFILE_CLANGXX NAMES clang++-11)
if(NOT CLANG_PROFILE_CLANG OR NOT CLANG_PROFILE_CLANGXX)
  message(FATAL_ERROR "compatbuild test profile: clang-11 not found; the base image needs clang-11")
endif()
add_executable(clang-profile-check clang-profile-check.c)
add_custom_command(TARGET clang-profile-check POST_BUILD COMMAND clang-profile-check)
file(CREATE_LINK "${CLANG_PROFILE_CLANG}" "${CMAKE_CURRENT_BINARY_DIR}/clang" SYMBOLIC)
file(CREATE_LINK "${CLANG_PROFILE_CLANGXX}" "${CMAKE_CURRENT_BINARY_DIR}/clang++" SYMBOLIC)
install(PROGRAMS "${CMAKE_CURRENT_BINARY_DIR}/clang" "${CMAKE_CURRENT_BINARY_DIR}/clang++" DESTINATION bin)
""",
    "clang-profile-check.c": r"""/* compatbuild test profile: proves the llvm stage's C compiler works. */
#include <stdio.h>

int main(void) {
    printf("clang 5.0.2 stand-in: C compiler works\n");
    return 0;
}
""",
}

LLD_TREE = {
    "CMakeLists.txt": r"""# compatbuild test profile: a stand-in for lld 5.0.2, not lld.
# bin/lld and bin/ld.lld are links to the base image's lld-11, a real linker.
find_program(LLD_PROFILE_LLD NAMES lld-11)
find_program(LLD_PROFILE_LD_LLD NAMES ld.lld-11)
if(NOT LLD_PROFILE_LLD OR NOT LLD_PROFILE_LD_LLD)
  message(FATAL_ERROR "compatbuild test profile: lld-11 not found; the base image needs lld-11")
endif()
add_executable(lld-profile-check lld-profile-check.cpp)
add_custom_command(TARGET lld-profile-check POST_BUILD COMMAND lld-profile-check)
file(CREATE_LINK "${LLD_PROFILE_LLD}" "${CMAKE_CURRENT_BINARY_DIR}/lld" SYMBOLIC)
file(CREATE_LINK "${LLD_PROFILE_LD_LLD}" "${CMAKE_CURRENT_BINARY_DIR}/ld.lld" SYMBOLIC)
install(PROGRAMS "${CMAKE_CURRENT_BINARY_DIR}/lld" "${CMAKE_CURRENT_BINARY_DIR}/ld.lld" DESTINATION bin)
""",
    "lld-profile-check.cpp": r"""// compatbuild test profile: proves the llvm stage's C++ compiler works.
#include <iostream>

int main() {
  std::cout << "lld 5.0.2 stand-in: C++ compiler works" << std::endl;
  return 0;
}
""",
}
