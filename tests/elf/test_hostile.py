"""The audit and the fix-up on hostile input: crafted version tables, odd files, foreign ELF.

Every library is linked here by gcc and then patched in one field (tests/support/elfcraft.py);
readelf on the unpatched copy is the witness of what the needs really are, and ld.so (ctypes)
of whether the patched file still loads. Whatever the input, the answer comes within seconds:
a result, or one line naming the file.
"""

from __future__ import annotations

import ctypes
import os
import resource
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from test_audit import readelf

from tasks.elf.audit import audit_library
from tasks.elf.fixup import fix_weak_needs
from tasks.elf.hostsyms import host_symbols
from tasks.errors import AuditError, FixupError
from tasks.settings import PROJECT_ROOT
from tests.support.elfcraft import (
    object_file,
    patch_header,
    patch_section,
    section_field,
    shared_object,
    shared_object_32,
)

# Needs from two libraries, so .gnu.version_r holds two Elf_Verneed: libm's exp@GLIBC_2.29 and
# libc's puts plus a weak-only close_range@GLIBC_2.34 (the need the fix-up makes weak).
TWO_NEEDS_C = """\
#include <math.h>
#include <stdio.h>
extern int close_range(unsigned int first, unsigned int last, int flags) __attribute__((weak));
double grow(double x) { puts("grow"); return close_range ? exp(x) : x; }
"""


class Hung(Exception):  # noqa: N818 - what happened; not an OSError, which the code under test catches
    """The code under test was still running at its deadline."""


@contextmanager
def deadline(seconds: int) -> Iterator[None]:
    """Fail (Hung) instead of hanging when the body is still running after ``seconds``."""
    def expire(_signum: int, _frame: object) -> None:
        raise Hung(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return shared_object(tmp_path_factory.mktemp("hostile") / "libtwoneeds.so", TWO_NEEDS_C, "-lm")


@pytest.fixture
def lib(pristine: Path, tmp_path: Path) -> Path:
    return Path(shutil.copy2(pristine, tmp_path / pristine.name))


def needs_of(path: Path) -> set[tuple[str, str, bool]]:
    return {(n.library, n.version, n.weak) for n in audit_library(path, target_glibc="2.31").version_needs}


def one_line(message: str, path: Path) -> None:
    assert message.startswith(f"{path}: ") and "\n" not in message, message


# ------------------------------------------------------------------ .gnu.version_r walks


def test_a_verneed_count_of_0xffffffff_ends_at_vn_next_0_as_ld_so_does(pristine: Path, lib: Path) -> None:
    witness = set(readelf(pristine).version_needs)
    assert {v for _lib, v, _weak in witness} >= {"GLIBC_2.29", "GLIBC_2.34"}  # libm's and libc's
    assert section_field(lib, ".gnu.version_r", "sh_info") == 2
    patch_section(lib, ".gnu.version_r", "sh_info", 0xFFFFFFFF)
    ctypes.CDLL(str(lib))  # ld.so follows vn_next, never sh_info: it loads the file

    with deadline(20):
        assert needs_of(lib) == witness
        report = fix_weak_needs(lib)
    assert [(n.library, n.version) for n in report.weakened] == [("libc.so.6", "GLIBC_2.34")]
    with deadline(20):
        assert ("libc.so.6", "GLIBC_2.34", True) in needs_of(lib)
    assert ("libc.so.6", "GLIBC_2.34", True) in set(readelf(_restored(lib)).version_needs)


def _restored(path: Path) -> Path:
    """A copy of ``path`` with .gnu.version_r's sh_info put back to 2, for readelf."""
    copy = path.with_name(f"restored-{path.name}")
    shutil.copy2(path, copy)
    patch_section(copy, ".gnu.version_r", "sh_info", 2)
    return copy


def test_a_verneed_count_below_the_chain_still_sees_every_need_ld_so_checks(pristine: Path, lib: Path) -> None:
    """sh_info 1 of 2: ld.so still checks the second library's versions, so the audit must too."""
    patch_section(lib, ".gnu.version_r", "sh_info", 1)
    ctypes.CDLL(str(lib))
    assert needs_of(lib) == set(readelf(pristine).version_needs)
    assert [n.version for n in fix_weak_needs(lib).weakened] == ["GLIBC_2.34"]


def test_a_verneed_section_whose_chain_leaves_it_is_one_line(lib: Path) -> None:
    """sh_size cut to one Elf_Verneed: the chain's next entry lies outside what the section holds."""
    patch_section(lib, ".gnu.version_r", "sh_size", 16)
    outside = r"\.gnu\.version_r: an Elf_Vernaux at 0x[0-9a-f]+ lies outside the section"
    with deadline(20), pytest.raises(AuditError, match=outside) as audit:
        audit_library(lib, target_glibc="2.31")
    one_line(str(audit.value), lib)
    with deadline(20), pytest.raises(FixupError, match=outside) as fix:
        fix_weak_needs(lib)
    one_line(str(fix.value), lib)


# ------------------------------------------------------------------ .gnu.version entry size


def test_a_versym_entry_size_of_0_is_one_line_naming_the_file(lib: Path) -> None:
    patch_section(lib, ".gnu.version", "sh_entsize", 0)
    with pytest.raises(AuditError, match=r"\.gnu\.version has sh_entsize 0, not 2") as audit:
        audit_library(lib, target_glibc="2.31")
    one_line(str(audit.value), lib)
    with pytest.raises(FixupError, match=r"\.gnu\.version has sh_entsize 0, not 2") as fix:
        fix_weak_needs(lib)
    one_line(str(fix.value), lib)
    with pytest.raises(AuditError, match=r"\.gnu\.version has sh_entsize 0, not 2"):
        host_symbols(lib)


# ------------------------------------------------------------------ not an x86_64 shared object

LEAF_C = "int leaf(void) { return 7; }\n"


def test_a_32_bit_shared_object_is_refused_not_passed(tmp_path: Path) -> None:
    lib32 = shared_object_32(tmp_path / "lib32.so", LEAF_C)
    with pytest.raises(AuditError, match="a 32-bit ELF for machine 3; the audit reads x86_64") as caught:
        audit_library(lib32, target_glibc="2.17")
    one_line(str(caught.value), lib32)


def test_a_relocatable_object_is_refused_not_passed(tmp_path: Path) -> None:
    obj = object_file(tmp_path / "leaf.o", LEAF_C)
    with pytest.raises(AuditError, match=r"ELF type 1 is not a shared object \(ET_DYN\)") as caught:
        audit_library(obj, target_glibc="2.17")
    one_line(str(caught.value), obj)


def test_a_machine_the_audit_does_not_know_is_refused(lib: Path) -> None:
    patch_header(lib, "e_machine", 243)  # EM_RISCV: not in the table (x86_64 and aarch64 are)
    with pytest.raises(AuditError, match="a 64-bit ELF for machine 243") as caught:
        audit_library(lib, target_glibc="2.17")
    one_line(str(caught.value), lib)


# ------------------------------------------------------------------ not a regular file


@pytest.mark.parametrize("kind", ["fifo", "dev-zero", "directory"])
def test_what_is_not_a_regular_file_is_refused_before_it_is_read(tmp_path: Path, kind: str) -> None:
    if kind == "fifo":
        odd = tmp_path / "libpipe.so"
        os.mkfifo(odd)  # opening it for reading would wait for a writer, forever
    elif kind == "dev-zero":
        odd = Path("/dev/zero")  # reading it never ends
    else:
        odd = tmp_path / "libdir.so"
        odd.mkdir()
    with deadline(10), pytest.raises(AuditError, match="not a regular file") as audit:
        audit_library(odd, target_glibc="2.17")
    one_line(str(audit.value), odd)
    with deadline(10), pytest.raises(FixupError, match="not a regular file") as fix:
        fix_weak_needs(odd)
    one_line(str(fix.value), odd)


def test_a_symlink_to_a_library_is_still_read(lib: Path, tmp_path: Path) -> None:
    link = tmp_path / "liblink.so"
    link.symlink_to(lib)
    assert needs_of(link) == needs_of(lib)


def _invoke(*args: str, limit_memory: bool = False) -> subprocess.CompletedProcess[str]:
    def cap() -> None:  # so that reading /dev/zero ends in MemoryError, not in the OOM killer
        resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))

    return subprocess.run([sys.executable, "-m", "invoke", *args], cwd=PROJECT_ROOT, capture_output=True,
                          text=True, timeout=60, preexec_fn=cap if limit_memory else None)  # noqa: PLW1509


def test_invoke_audit_on_a_fifo_and_fix_on_dev_zero_are_one_line_errors(tmp_path: Path) -> None:
    fifo = tmp_path / "libpipe.so"
    os.mkfifo(fifo)
    audit = _invoke("audit", "--glibc", "2.17", "--path", str(fifo))
    assert audit.returncode == AuditError.exit_code, audit.stderr
    assert audit.stderr.strip().splitlines() == [f"compatbuild: {fifo}: not a regular file (a FIFO); "
                                                 "the audit reads ELF shared objects only"]
    fix = _invoke("audit", "--fix", "--glibc", "2.17", "--path", "/dev/zero", limit_memory=True)
    assert fix.returncode == FixupError.exit_code, fix.stderr
    assert fix.stderr.strip().splitlines() == ["compatbuild: /dev/zero: not a regular file (a character "
                                               "device); the fix-up edits ELF shared objects only"]


def test_a_parsed_file_makes_each_section_once_and_still_checks_a_wanted_type(pristine: Path) -> None:
    from elftools.common.exceptions import ELFError

    from tasks.elf.reading import open_elf

    with pristine.open("rb") as stream:
        elf = open_elf(stream)
        first = list(elf.iter_sections())
        assert [s.name for s in first] == [s.name for s in elf.iter_sections()]
        assert all(a is b for a, b in zip(first, elf.iter_sections(), strict=True))  # made once, asked twice
        dynsym = elf.get_section_by_name(".dynsym")
        assert dynsym is not None and dynsym in first
        index = first.index(dynsym)
        assert elf.get_section(index, ("SHT_DYNSYM",)) is dynsym
        with pytest.raises(ELFError, match="Unexpected section type"):
            elf.get_section(index, ("SHT_SYMTAB",))
