"""Tests for tasks.elf.audit against real shared objects built here with gcc and cargo.

Every library is really linked on this machine (Debian 12, glibc 2.36, binutils 2.40);
readelf is the independent witness the audit is compared with.
"""

from __future__ import annotations

import ctypes
import json
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tasks.elf.audit import (
    DEFAULT_ALLOWED_NEEDED,
    LibraryAudit,
    SymbolNeed,
    VersionNeed,
    audit_library,
    audit_paths,
    format_report,
    raise_on_violation,
    report_json,
)
from tasks.errors import AuditError, CompatError

SYSTEM_LIBS = [
    Path("/lib/x86_64-linux-gnu/libz.so.1"),
    Path("/lib/x86_64-linux-gnu/libstdc++.so.6"),
    Path("/lib/x86_64-linux-gnu/libc.so.6"),
    Path("/lib/x86_64-linux-gnu/libgcc_s.so.1"),
]

RUST_LIB_RS = """\
use std::cell::RefCell;

extern "C" {
    fn malloc(size: usize) -> *mut u8;
    fn free(ptr: *mut u8);
}

thread_local! {
    static CALLS: RefCell<Vec<u32>> = RefCell::new(Vec::new());
}

#[no_mangle]
pub extern "C" fn test() -> i32 {
    let block = unsafe { malloc(64) };
    unsafe { free(block) };
    println!("hello from the audit test cdylib");
    CALLS.with(|calls| calls.borrow_mut().push(1));
    std::thread::spawn(|| 41).join().unwrap() + 1
}
"""

RUST_CARGO_TOML = """\
[package]
name = "auditprobe"
version = "0.1.0"
edition = "2021"

[lib]
crate-type = ["cdylib"]
"""


def run(args: list[str | Path], cwd: Path | None = None) -> str:
    result = subprocess.run(  # noqa: S603 - an argument list of our own, no shell
        [str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, f"{args} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def gcc_shared(out: Path, source: str, *extra: str | Path) -> Path:
    src = out.with_suffix(".c")
    src.write_text(source)
    run(["gcc", "-shared", "-fPIC", "-O1", "-o", out, src, *extra])
    return out


# --- readelf, the independent witness -------------------------------------------------


@dataclass
class ReadelfView:
    needed: list[str]
    rpath: list[str]
    runpath: list[str]
    soname: str | None
    version_needs: list[tuple[str, str, bool]]
    needs_offsets: dict[str, int]  # version name -> file offset of its Elf_Vernaux
    symbols: set[tuple[str, str, str, bool]]
    weak_bound: set[str]


def readelf(path: Path) -> ReadelfView:
    dynamic = run(["readelf", "-d", "--wide", path])

    def values(kind: str) -> list[str]:
        return re.findall(rf"\({kind}\)\s+.*?: \[(.*)\]", dynamic)

    versions = run(["readelf", "-V", "--wide", path])
    needs: list[tuple[str, str, bool]] = []
    offsets: dict[str, int] = {}
    by_index: dict[str, tuple[str, str, bool]] = {}
    section_offset, library = 0, ""
    in_needs = False
    for line in versions.splitlines():
        if line.startswith("Version needs section"):
            in_needs = True
        elif line.startswith("Version ") and not line.startswith(" "):
            in_needs = False
        elif in_needs and (m := re.search(r"Offset: (0x[0-9a-f]+)", line)):
            section_offset = int(m.group(1), 16)
        elif in_needs and (m := re.search(r"File: (\S+)\s+Cnt:", line)):
            library = m.group(1)
        elif in_needs and (
            m := re.search(r"(0x[0-9a-f]+):\s+Name: (\S+)\s+Flags: (.*?)\s+Version: (\d+)", line)
        ):
            need = (library, m.group(2), "WEAK" in m.group(3))
            needs.append(need)
            offsets[m.group(2)] = section_offset + int(m.group(1), 16)
            by_index[m.group(4)] = need
    symbols: set[tuple[str, str, str, bool]] = set()
    weak_bound: set[str] = set()
    for line in run(["readelf", "--dyn-syms", "--wide", path]).splitlines():
        fields = line.split()
        if len(fields) >= 8 and fields[6] == "UND":
            m = re.fullmatch(r"([^@]+)@([^@]+)", fields[7])
            if m and len(fields) >= 9:
                library, version, weak = by_index[fields[8].strip("()")]
                assert version == m.group(2)
                symbols.add((m.group(1), version, library, weak))
            if fields[4] == "WEAK":
                weak_bound.add(fields[7].split("@")[0])
    sonames = values("SONAME")
    return ReadelfView(
        needed=values("NEEDED"),
        rpath=[p for v in values("RPATH") for p in v.split(":")],
        runpath=[p for v in values("RUNPATH") for p in v.split(":")],
        soname=sonames[0] if sonames else None,
        version_needs=needs,
        needs_offsets=offsets,
        symbols=symbols,
        weak_bound=weak_bound,
    )


def mark_need_weak(path: Path, version: str) -> None:
    """Set VER_FLG_WEAK on one Elf_Vernaux, located by readelf (not by the code under test).

    Neither ld.bfd 2.40, gold nor lld ever writes a weak version need for a reference
    into glibc (bfd copies the provider's vd_flags, which glibc never marks weak);
    in the wild such needs come from exactly this post-link edit (polyfill-glibc and
    hand patches that let a binary load on an older glibc).
    """
    offset = readelf(path).needs_offsets[version] + 4  # vna_hash (4 bytes), vna_flags
    data = bytearray(path.read_bytes())
    flags = int.from_bytes(data[offset : offset + 2], "little") | 0x2
    data[offset : offset + 2] = flags.to_bytes(2, "little")
    path.write_bytes(bytes(data))


# --- fixtures: build everything once ------------------------------------------------


@pytest.fixture(scope="session")
def rust_lib(tmp_path_factory: pytest.TempPathFactory) -> Path:
    crate = tmp_path_factory.mktemp("rust-crate")
    (crate / "src").mkdir()
    (crate / "Cargo.toml").write_text(RUST_CARGO_TOML)
    (crate / "src" / "lib.rs").write_text(RUST_LIB_RS)
    run(["cargo", "build", "--release", "--offline", "--quiet"], cwd=crate)
    return crate / "target" / "release" / "libauditprobe.so"


@pytest.fixture(scope="session")
def c_libs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("c-libs")
    libs: dict[str, Path] = {}
    libs["old"] = gcc_shared(
        d / "libold.so", '#include <stdio.h>\nvoid hello(void) { puts("hi"); }\n'
    )
    libs["numeric"] = gcc_shared(
        d / "libnumeric.so",
        "#include <string.h>\n"
        "extern int __printf_chk(int flag, const char *format, ...);\n"
        "void copy(char *dst, const char *src, size_t n) {\n"
        '  memcpy(dst, src, n); __printf_chk(1, "%s", dst);\n}\n',
    )
    libs["nosoname"] = gcc_shared(d / "libnosoname.so", "int helper(void) { return 7; }\n")
    libs["absolute"] = gcc_shared(
        d / "libabsolute.so",
        "int helper(void);\nint call_helper(void) { return helper(); }\n",
        libs["nosoname"].resolve(),
    )
    libs["helper"] = gcc_shared(
        d / "libhelper.so", "int helper2(void) { return 8; }\n", "-Wl,-soname,libhelper.so.1"
    )
    libs["unexpected"] = gcc_shared(
        d / "libunexpected.so",
        "int helper2(void);\nint call_helper2(void) { return helper2(); }\n",
        f"-L{d}",
        "-lhelper",
    )
    rpath_src = '#include <stdio.h>\nvoid hello(void) { puts("rpath"); }\n'
    libs["rpath"] = gcc_shared(
        d / "librpath.so",
        rpath_src,
        "-Wl,-rpath,/opt/one:$ORIGIN/../lib",
        "-Wl,--disable-new-dtags",
    )
    libs["runpath"] = gcc_shared(
        d / "librunpath.so", rpath_src, "-Wl,-rpath,/opt/two", "-Wl,--enable-new-dtags"
    )
    libs["relr"] = gcc_shared(
        d / "librelr.so",
        '#include <stdio.h>\nstatic const char *msgs[] = {"a", "b", "c"};\n'
        "const char *pick(int i) { puts(msgs[i]); return msgs[i]; }\n",
        "-Wl,-z,pack-relative-relocs",
    )
    weak_src = (
        "#include <stdint.h>\n#include <stdio.h>\nextern uint32_t arc4random(void);\n"
        'int probe(void) { puts("probe"); return (int)(arc4random() & 0x7fff); }\n'
    )
    libs["strong_new"] = gcc_shared(d / "libstrongnew.so", weak_src)
    libs["weak_need"] = gcc_shared(d / "libweakneed.so", weak_src)
    mark_need_weak(libs["weak_need"], "GLIBC_2.36")
    return libs


# --- glibc versions -------------------------------------------------------------------


def test_rust_cdylib_against_glibc_2_31_fails_and_names_symbols(rust_lib: Path) -> None:
    audit = audit_library(rust_lib, target_glibc="2.31")
    names = {f"{s.name}@{s.version}" for s in audit.too_new}
    assert not audit.ok
    assert "pthread_create@GLIBC_2.34" in names  # thread::spawn
    assert audit.max_glibc == "2.34"
    expected = {
        f"{name}@{version}"
        for name, version, _lib, weak in readelf(rust_lib).symbols
        if version.startswith("GLIBC_2.")
        and not weak
        and tuple(int(p) for p in version[6:].split(".")) > (2, 31)
    }
    assert names == expected
    assert all(s.library == "libc.so.6" for s in audit.too_new)
    assert audit.unexpected_needed == () and audit.absolute_needed == ()


def test_rust_cdylib_against_glibc_2_36_passes(rust_lib: Path) -> None:
    audit = audit_library(rust_lib, target_glibc="2.36")
    assert audit.ok
    assert audit.too_new == () and audit.too_new_weak == () and audit.too_new_needs == ()
    assert set(audit.needed) <= DEFAULT_ALLOWED_NEEDED


def test_weak_bound_symbol_still_makes_a_hard_version_need(rust_lib: Path) -> None:
    """std binds __cxa_thread_atexit_impl STB_WEAK, but its GLIBC_2.18 need is not weak."""
    witness = readelf(rust_lib)
    assert "__cxa_thread_atexit_impl" in witness.weak_bound
    audit = audit_library(rust_lib, target_glibc="2.17")
    assert SymbolNeed("__cxa_thread_atexit_impl", "GLIBC_2.18", "libc.so.6", False) in audit.too_new
    assert audit.too_new_weak == ()
    assert not audit.ok


def test_c_lib_calling_puts_passes_against_2_17(c_libs: dict[str, Path]) -> None:
    audit = audit_library(c_libs["old"], target_glibc="2.17")
    assert audit.ok
    assert audit.needed == ("libc.so.6",)
    assert audit.version_needs == (VersionNeed("libc.so.6", "GLIBC_2.2.5", False),)
    # What it really needs: puts, and __cxa_finalize from gcc's crtbeginS.o.
    assert {s.name for s in audit.symbols} == {"puts", "__cxa_finalize"}
    assert audit.max_glibc == "2.2.5"


@pytest.mark.parametrize(
    ("target", "too_new"),
    [
        ("2.17", set()),
        ("2.14", set()),
        ("2.9", {"memcpy@GLIBC_2.14"}),
        ("2.3.4", {"memcpy@GLIBC_2.14"}),
        ("GLIBC_2.3", {"memcpy@GLIBC_2.14", "__printf_chk@GLIBC_2.3.4"}),
    ],
)
def test_versions_compare_numerically(
    c_libs: dict[str, Path], target: str, too_new: set[str]
) -> None:
    audit = audit_library(c_libs["numeric"], target_glibc=target)
    assert audit.max_glibc == "2.14"
    assert {f"{s.name}@{s.version}" for s in audit.too_new} == too_new
    assert audit.ok == (not too_new)


def test_dt_relr_marker_version_need_counts_as_glibc_2_36(c_libs: dict[str, Path]) -> None:
    old = audit_library(c_libs["relr"], target_glibc="2.31")
    assert old.too_new == ()  # no symbol uses GLIBC_ABI_DT_RELR ...
    assert old.too_new_needs == (VersionNeed("libc.so.6", "GLIBC_ABI_DT_RELR", False),)
    assert not old.ok  # ... yet glibc < 2.36 refuses to load the library
    assert old.max_glibc == "2.36"
    line = "  GLIBC_ABI_DT_RELR (libc.so.6), a version need no symbol uses"
    assert line in format_report([old]).splitlines()
    with pytest.raises(AuditError, match=r"librelr.so needs GLIBC_ABI_DT_RELR > 2.31"):
        raise_on_violation([old])
    assert audit_library(c_libs["relr"], target_glibc="2.36").ok


def test_weak_version_need_is_informational(c_libs: dict[str, Path]) -> None:
    assert ("libc.so.6", "GLIBC_2.36", True) in readelf(c_libs["weak_need"]).version_needs
    ctypes.CDLL(str(c_libs["weak_need"])).probe()  # the edited ELF still loads and runs
    audit = audit_library(c_libs["weak_need"], target_glibc="2.31")
    assert audit.ok
    assert audit.too_new == ()
    assert audit.too_new_weak == (SymbolNeed("arc4random", "GLIBC_2.36", "libc.so.6", True),)
    assert audit.max_glibc == "2.2.5"
    assert "    arc4random@GLIBC_2.36 (libc.so.6)" in format_report([audit]).splitlines()
    raise_on_violation([audit])

    strong = audit_library(c_libs["strong_new"], target_glibc="2.31")
    assert strong.too_new == (SymbolNeed("arc4random", "GLIBC_2.36", "libc.so.6", False),)
    assert not strong.ok


# --- DT_NEEDED, RPATH, RUNPATH ----------------------------------------------------------


def test_absolute_dt_needed_is_a_violation(c_libs: dict[str, Path]) -> None:
    absolute = str(c_libs["nosoname"].resolve())
    allowed = DEFAULT_ALLOWED_NEEDED | {"libnosoname.so"}
    audit = audit_library(c_libs["absolute"], target_glibc="2.17", allowed_needed=allowed)
    assert absolute in audit.needed
    assert audit.absolute_needed == (absolute,)
    assert audit.unexpected_needed == ()
    assert not audit.ok
    assert f"  absolute DT_NEEDED: {absolute}" in format_report([audit]).splitlines()
    summary = f"libabsolute.so has absolute DT_NEEDED {re.escape(absolute)}"
    with pytest.raises(AuditError, match=summary):
        raise_on_violation([audit])


def test_unexpected_needed_library_is_a_violation(c_libs: dict[str, Path]) -> None:
    audit = audit_library(c_libs["unexpected"], target_glibc="2.17")
    assert audit.unexpected_needed == ("libhelper.so.1",)
    assert not audit.ok
    with pytest.raises(AuditError, match="libunexpected.so needs unexpected libhelper.so.1"):
        raise_on_violation([audit])
    allowed = DEFAULT_ALLOWED_NEEDED | {"libhelper.so.1"}
    assert audit_library(c_libs["unexpected"], target_glibc="2.17", allowed_needed=allowed).ok
    assert audit_library(c_libs["helper"], target_glibc="2.17").soname == "libhelper.so.1"


def test_rpath_and_runpath_are_reported(c_libs: dict[str, Path]) -> None:
    rpath, runpath = audit_paths([c_libs["rpath"], c_libs["runpath"]], target_glibc="2.17")
    assert rpath.rpath == ("/opt/one", "$ORIGIN/../lib") and rpath.runpath == ()
    assert runpath.runpath == ("/opt/two",) and runpath.rpath == ()
    lines = format_report([rpath, runpath]).splitlines()
    assert "  RPATH: /opt/one:$ORIGIN/../lib" in lines
    assert "  RUNPATH: /opt/two" in lines


# --- reports and errors -------------------------------------------------------------------


def test_report_text_json_and_summary(rust_lib: Path, c_libs: dict[str, Path]) -> None:
    audits = audit_paths([rust_lib, c_libs["old"]], target_glibc="2.31")
    lines = format_report(audits).splitlines()
    linker = audit_library(rust_lib, target_glibc="2.31").linker
    assert linker is not None and linker.startswith("LLD ")  # the host's rust-lld
    assert lines[0] == f"FAIL {rust_lib} (max GLIBC 2.34, target 2.31, linked by {linker})"
    assert "  pthread_getattr_np@GLIBC_2.32 (libc.so.6)" in lines
    assert f"ok   {c_libs['old']} (max GLIBC 2.2.5, target 2.31)" in lines

    document = json.loads(report_json(audits))
    assert document["ok"] is False
    rust, old = document["libraries"]
    assert (rust["ok"], old["ok"]) == (False, True)
    assert {s["name"] for s in rust["too_new"]} == {s.name for s in audits[0].too_new}

    with pytest.raises(AuditError) as caught:
        raise_on_violation(audits)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("libauditprobe.so needs GLIBC_2.34 > 2.31: ")
    assert message.endswith(f"({len(audits[0].too_new)} symbols)")
    assert caught.value.exit_code == 10


@pytest.mark.parametrize("content", [b"just some text\n", b"\x7fELF\x02\x01\x01" + b"\0" * 40])
def test_non_elf_file_raises_audit_error_naming_path(tmp_path: Path, content: bytes) -> None:
    bogus = tmp_path / "libbogus.so"
    bogus.write_bytes(content)
    with pytest.raises(AuditError, match=re.escape(str(bogus))) as caught:
        audit_library(bogus, target_glibc="2.17")
    assert "\n" not in str(caught.value)


def test_missing_file_and_bad_target_raise_audit_error(
    tmp_path: Path, c_libs: dict[str, Path]
) -> None:
    with pytest.raises(AuditError, match="No such file"):
        audit_library(tmp_path / "absent.so", target_glibc="2.17")
    with pytest.raises(CompatError, match="target glibc must look like 2.17"):
        audit_library(c_libs["old"], target_glibc="latest")


# --- cross-check with readelf ---------------------------------------------------------------


def assert_agrees_with_readelf(audit: LibraryAudit, path: Path) -> None:
    witness = readelf(path)
    assert list(audit.needed) == witness.needed
    assert list(audit.rpath) == witness.rpath
    assert list(audit.runpath) == witness.runpath
    assert audit.soname == witness.soname
    assert [(n.library, n.version, n.weak) for n in audit.version_needs] == witness.version_needs
    assert {(s.name, s.version, s.library, s.weak) for s in audit.symbols} == witness.symbols
    assert len(audit.symbols) == len(witness.symbols)


@pytest.mark.parametrize("path", SYSTEM_LIBS, ids=lambda p: p.name)
def test_system_libraries_agree_with_readelf(path: Path) -> None:
    witness = readelf(path)
    assert witness.needed and witness.version_needs and witness.symbols  # not vacuous
    assert_agrees_with_readelf(audit_library(path, target_glibc="2.17"), path)


def test_built_libraries_agree_with_readelf(rust_lib: Path, c_libs: dict[str, Path]) -> None:
    for path in [rust_lib, *c_libs.values()]:
        assert_agrees_with_readelf(audit_library(path, target_glibc="2.17"), path)


# --- the weak-version fix-up on Rust std ----------------------------------------------------


def test_fixup_turns_std_weak_glibc_2_18_need_weak(rust_lib: Path, tmp_path: Path) -> None:
    """std's only GLIBC_2.18 reference is the weak __cxa_thread_atexit_impl: fixed, 2.18 is no longer hard."""
    from tasks.elf.fixup import fix_weak_needs

    lib = Path(shutil.copy2(rust_lib, tmp_path / rust_lib.name))
    before = audit_library(lib, target_glibc="2.17")
    assert SymbolNeed("__cxa_thread_atexit_impl", "GLIBC_2.18", "libc.so.6", False) in before.too_new
    report = fix_weak_needs(lib)
    weakened = {n.version: n.weak_symbols for n in report.weakened}
    assert weakened["GLIBC_2.18"] == ("__cxa_thread_atexit_impl",)
    after = audit_library(lib, target_glibc="2.17", fixup=report)
    assert SymbolNeed("__cxa_thread_atexit_impl", "GLIBC_2.18", "libc.so.6", True) in after.too_new_weak
    assert "GLIBC_2.18" not in {s.version for s in after.too_new}
    assert ("libc.so.6", "GLIBC_2.18", True) in readelf(lib).version_needs
    assert_agrees_with_readelf(after, lib)
    ctypes.CDLL(str(lib)).test()  # the edited library still loads and runs here


# --- beyond GLIBC: libgcc_s, libstdc++, libz --------------------------------------------------

CXX_SRC = """\
#include <string>
struct Box { int v; };
extern "C" unsigned long name_length(const char *s) {
    std::string name(s);
    name += "!";
    Box *box = new Box{1};
    delete box;  // C++14 sized delete: _ZdlPvm@CXXABI_1.3.9
    return name.size();
}
"""
ZLIB_SRC = """\
#include <zlib.h>
int check(z_stream *s) { return inflateValidate(s, 1); }
uLong combine(uLong a, uLong b, z_off_t n) { return crc32_combine_op(a, b, crc32_combine_gen(n)); }
"""
RUNTIME_NEEDED = DEFAULT_ALLOWED_NEEDED | {"libstdc++.so.6", "libz.so.1"}


@pytest.fixture(scope="session")
def runtime_libs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("runtime-libs")
    cxx_src = d / "cxx.cc"
    cxx_src.write_text(CXX_SRC)
    run(["g++", "-shared", "-fPIC", "-O1", "-o", d / "libcxx.so", cxx_src])
    return {
        "cxx": d / "libcxx.so",
        "float16": gcc_shared(d / "libf16.so", "float widen(_Float16 h) { return (float)h; }\n", "-shared-libgcc"),
        "zlib": gcc_shared(d / "libzuser.so", ZLIB_SRC, "-lz"),
    }


def hard_needs_above(path: Path, family: str, floor: str) -> set[str]:
    """readelf's hard needs of ``family`` newer than ``floor``: what the audit must name."""
    def key(v: str) -> tuple[int, ...]:
        return tuple(int(p) for p in v.split("."))
    return {
        version for _lib, version, weak in readelf(path).version_needs
        if version.startswith(f"{family}_") and not weak
        and re.fullmatch(r"[\d.]+", version[len(family) + 1:]) and key(version[len(family) + 1:]) > key(floor)
    }


def test_cxx_library_built_by_gxx_12_needs_too_new_glibcxx_and_cxxabi_for_centos7(
    runtime_libs: dict[str, Path]
) -> None:
    from tasks.elf.floors import floors_for

    lib = runtime_libs["cxx"]
    centos7 = floors_for("centos7")
    audit = audit_library(lib, floors=centos7, allowed_needed=RUNTIME_NEEDED)
    named = {r.version: r for r in audit.too_new_runtime}
    assert set(named) == hard_needs_above(lib, "GLIBCXX", "3.4.19") | hard_needs_above(lib, "CXXABI", "1.3.7")
    assert "GLIBCXX_3.4.21" in named and "CXXABI_1.3.9" in named  # std::__cxx11::string, sized delete
    assert named["GLIBCXX_3.4.21"].provided == "GLIBCXX_3.4.19"
    assert named["GLIBCXX_3.4.21"].library == "libstdc++.so.6"
    assert "_ZNSt7__cxx1112basic_stringIcSt11char_traitsIcESaIcEE10_M_disposeEv" in named["GLIBCXX_3.4.21"].symbols
    assert named["CXXABI_1.3.9"].symbols == ("_ZdlPvm",)
    assert not audit.ok and audit.too_new == ()  # glibc alone would have passed it
    assert audit.target == "centos7 (glibc 2.17)"
    text = format_report([audit]).splitlines()
    assert text[0] == f"FAIL {lib} (max GLIBC 2.14, target centos7 (glibc 2.17))"
    assert "  CXXABI_1.3.9 (libstdc++.so.6) > CXXABI_1.3.7: _ZdlPvm" in text
    with pytest.raises(AuditError) as caught:
        raise_on_violation([audit])
    message = str(caught.value)
    assert "libcxx.so needs GLIBCXX_3.4.21 (libstdc++.so.6) > GLIBCXX_3.4.19 (centos7): " in message
    assert "libcxx.so needs CXXABI_1.3.9 (libstdc++.so.6) > CXXABI_1.3.7 (centos7): _ZdlPvm (1 symbol)" in message
    document = json.loads(report_json([audit]))["libraries"][0]
    assert {r["version"] for r in document["too_new_runtime"]} == set(named)
    assert document["floors"]["name"] == "centos7"

    assert audit_library(lib, floors=floors_for("bookworm"), allowed_needed=RUNTIME_NEEDED).ok
    assert audit_library(lib, target_glibc="2.17", allowed_needed=RUNTIME_NEEDED).ok  # glibc-only, as before


def test_libgcc_s_version_is_checked(runtime_libs: dict[str, Path]) -> None:
    from tasks.elf.floors import floors_for

    lib = runtime_libs["float16"]  # gcc 12's _Float16 helpers: __extendhfsf2@GCC_12.0.0
    assert hard_needs_above(lib, "GCC", "7.0.0") == {"GCC_12.0.0"}
    bullseye = audit_library(lib, floors=floors_for("bullseye"))
    assert [(r.version, r.provided, r.symbols) for r in bullseye.too_new_runtime] == [
        ("GCC_12.0.0", "GCC_7.0.0", ("__extendhfsf2",))]
    assert not bullseye.ok
    assert audit_library(lib, floors=floors_for("bookworm")).ok


def test_zlib_version_is_checked(runtime_libs: dict[str, Path]) -> None:
    from tasks.elf.floors import floors_for

    lib = runtime_libs["zlib"]
    bullseye = audit_library(lib, floors=floors_for("bullseye"), allowed_needed=RUNTIME_NEEDED)
    assert {r.version for r in bullseye.too_new_runtime} == {"ZLIB_1.2.12"}  # inflateValidate (1.2.9) is fine
    centos7 = audit_library(lib, floors=floors_for("centos7"), allowed_needed=RUNTIME_NEEDED)
    assert {r.version for r in centos7.too_new_runtime} == {"ZLIB_1.2.9", "ZLIB_1.2.12"}
    assert {s for r in centos7.too_new_runtime for s in r.symbols} == {
        "inflateValidate", "crc32_combine_gen", "crc32_combine_op"}


def test_weak_runtime_need_is_not_a_violation(runtime_libs: dict[str, Path], tmp_path: Path) -> None:
    from tasks.elf.floors import floors_for

    lib = Path(shutil.copy2(runtime_libs["float16"], tmp_path / "libf16.so"))
    mark_need_weak(lib, "GCC_12.0.0")
    assert audit_library(lib, floors=floors_for("bullseye")).ok


def test_non_numeric_versions_pass_only_where_the_target_defines_them() -> None:
    from tasks.elf.floors import floors_for

    assert floors_for("centos7").provides("CXXABI_TM_1") is True
    assert floors_for("centos7").provides("CXXABI_FLOAT128") is False  # added after GCC 4.8
    assert floors_for("bullseye").provides("CXXABI_FLOAT128") is True
    assert floors_for("centos7").provides("GLIBC_2.17") is None  # glibc is judged separately
    assert floors_for("centos7").provides("GCC_4.8.0") is True
    assert floors_for("centos7").provides("GCC_4.10") is False  # numeric, not string, order


def test_unknown_target_and_mismatched_glibc_are_one_line_errors() -> None:
    from tasks.elf.floors import floors_for, resolve_floors

    with pytest.raises(AuditError, match=r"^unknown target 'rhel5' for the audit; known: bookworm, bullseye, centos7"):
        floors_for("rhel5")
    assert resolve_floors("fedora20", "2.18") == floors_for("fedora20")
    with pytest.raises(AuditError, match="target centos7 has glibc 2.17, but 2.18 was asked for"):
        resolve_floors("centos7", "2.18")
    unknown = resolve_floors("bullseye-as-fedora", "2.31")
    assert (unknown.glibc, unknown.gcc, unknown.glibcxx) == ("2.31", None, None)


def defined_versions(path: Path) -> set[str]:
    """readelf's version definitions (.gnu.version_d), without the file's own name."""
    text = run(["readelf", "-V", "--wide", path])
    section = text.split("Version definition section", 1)[1].split("Version needs section", 1)[0]
    return set(re.findall(r"Rev: \d+\s+Flags: (?:none|WEAK)\s+Index: \d+\s+Cnt: \d+\s+Name: (\S+)", section))


def assert_floors_match(floors_name: str, libgcc: Path, libstdcxx: Path, libz: Path) -> None:
    from tasks.elf.floors import floors_for

    floors = floors_for(floors_name)
    defined = defined_versions(libgcc) | defined_versions(libstdcxx) | defined_versions(libz)
    for family in ("GCC", "GLIBCXX", "CXXABI", "ZLIB"):
        numeric = [v[len(family) + 1:] for v in defined if re.fullmatch(rf"{family}_[\d.]+", v)]
        newest = max(numeric, key=lambda v: tuple(int(p) for p in v.split(".")))
        assert floors.maximum(family) == newest, (floors_name, family)
    named = {v for v in defined if re.fullmatch(r"(GCC|GLIBCXX|CXXABI|ZLIB)_[A-Z].*", v)}
    assert set(floors.named) == named
    assert all(floors.provides(v) for v in defined if v.split("_")[0] in ("GCC", "GLIBCXX", "CXXABI", "ZLIB"))


def test_bookworm_floors_are_what_this_machine_provides() -> None:
    libs = Path("/lib/x86_64-linux-gnu")
    assert_floors_match("bookworm", libs / "libgcc_s.so.1", libs / "libstdc++.so.6", libs / "libz.so.1")


def test_bullseye_floors_are_what_bullseyes_packages_provide(tmp_path_factory: pytest.TempPathFactory) -> None:
    from tasks.dlopen.sysroot import make_sysroot_from_debs
    from tasks.profile import default_cache_dir
    from tests.support.debpool import fetch_debs

    debs = fetch_debs(["libgcc-s1", "libstdc++6", "zlib1g"], default_cache_dir() / "debs")
    root = make_sysroot_from_debs(debs, tmp_path_factory.mktemp("bullseye-runtime") / "root", log=lambda _: None)
    libs = root / "usr/lib/x86_64-linux-gnu"
    libgcc = root / "lib/x86_64-linux-gnu/libgcc_s.so.1"
    libz = root / "lib/x86_64-linux-gnu/libz.so.1"
    assert_floors_match("bullseye", libgcc, libs / "libstdc++.so.6", libz)
