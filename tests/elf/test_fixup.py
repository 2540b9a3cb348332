"""The weak-version fix-up, proven with a real old loader.

Libraries are built here by gcc against this machine's glibc 2.36 and loaded by Debian
bullseye's glibc 2.31 loader (the ``bullseye`` sysroot of conftest.py): a library whose
only needs above 2.31 are weak fails there before the fix-up, with the loader's own
"version `GLIBC_2.34' not found", and loads after it, its weak symbols null. readelf is
the independent witness of what the edit changed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from test_audit import gcc_shared, readelf

from tasks.dlopen.smoke import smoke_native, smoke_sysroot
from tasks.elf.audit import audit_library, format_report, raise_on_violation
from tasks.elf.fixup import FixupReport, NeedChange, fix_weak_needs
from tasks.errors import AuditError, CompatError, FixupError, SmokeError
from tasks.settings import PROJECT_ROOT

NOT_FOUND_2_34 = "version `GLIBC_2.34' not found"

# Only needs above 2.31: weak close_range@GLIBC_2.34 and weak arc4random@GLIBC_2.36.
WEAK_ONLY_C = """\
#include <stdint.h>
#include <stdio.h>
extern int close_range(unsigned int first, unsigned int last, int flags) __attribute__((weak));
extern uint32_t arc4random(void) __attribute__((weak));
int has_close_range(void) { return close_range != 0; }
void test(void) {
    printf("close_range is %s\\n", close_range ? "present" : "null");
    printf("arc4random is %s\\n", arc4random ? "present" : "null");
}
"""

# GLIBC_2.34 is also needed by a strong reference (pthread_key_create moved into libc in
# 2.34), so that need must stay hard; GLIBC_2.36 is still weak-only.
MIXED_C = """\
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
extern int close_range(unsigned int first, unsigned int last, int flags) __attribute__((weak));
extern uint32_t arc4random(void) __attribute__((weak));
static pthread_key_t key;
void test(void) {
    pthread_key_create(&key, 0);
    printf("close_range is %s, arc4random is %s\\n", close_range ? "present" : "null",
           arc4random ? "present" : "null");
}
"""


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Pristine libraries; tests fix up copies of them."""
    d = tmp_path_factory.mktemp("fixup-libs")
    return {
        "weak_only": gcc_shared(d / "libweakonly.so", WEAK_ONLY_C),
        "mixed": gcc_shared(d / "libmixed.so", MIXED_C),
        "relr": gcc_shared(
            d / "librelr.so",
            '#include <stdio.h>\nstatic const char *m[] = {"a", "b"};\n'
            "extern int close_range(unsigned, unsigned, int) __attribute__((weak));\n"
            "const char *pick(int i) { puts(m[i]); return close_range ? m[0] : m[i]; }\n",
            "-Wl,-z,pack-relative-relocs",
        ),
    }


@pytest.fixture
def lib(built: dict[str, Path], tmp_path: Path, request: pytest.FixtureRequest) -> Path:
    name: str = request.param
    return Path(shutil.copy2(built[name], tmp_path / built[name].name))


@pytest.fixture(scope="session")
def smoke_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("smoke-cache")


def flags(path: Path) -> dict[str, bool]:
    """readelf's view: version need name -> Flags: WEAK."""
    return {version: weak for _lib, version, weak in readelf(path).version_needs}


# ------------------------------------------------------------------ the real loader


@pytest.mark.parametrize("lib", ["weak_only"], indirect=True)
def test_weak_only_library_fails_on_2_31_loader_until_fixed_then_sees_null(
    lib: Path, bullseye: Path, smoke_cache: Path
) -> None:
    with pytest.raises(SmokeError, match=NOT_FOUND_2_34):
        smoke_sysroot([lib], bullseye, cache=smoke_cache)

    report = fix_weak_needs(lib)
    assert report.weakened == (
        NeedChange("libc.so.6", "GLIBC_2.34", ("close_range",)),
        NeedChange("libc.so.6", "GLIBC_2.36", ("arc4random",)),
    )

    [old] = smoke_sysroot([lib], bullseye, cache=smoke_cache)
    assert "close_range is null" in old.output and "arc4random is null" in old.output
    # ... and where the symbols exist (glibc 2.36 here) they are still bound, not lost.
    [new] = smoke_native([lib], cache=smoke_cache)
    assert "close_range is present" in new.output and "arc4random is present" in new.output


@pytest.mark.parametrize("lib", ["mixed"], indirect=True)
def test_need_with_a_strong_reference_stays_hard_and_stays_a_violation(
    lib: Path, bullseye: Path, smoke_cache: Path
) -> None:
    report = fix_weak_needs(lib)
    assert report.weakened == (NeedChange("libc.so.6", "GLIBC_2.36", ("arc4random",)),)
    assert NeedChange("libc.so.6", "GLIBC_2.34", ("close_range",), ("pthread_key_create",)) in report.kept_hard
    assert flags(lib) == {"GLIBC_2.34": False, "GLIBC_2.36": True, "GLIBC_2.2.5": False}

    audit = audit_library(lib, target_glibc="2.31", fixup=report)
    assert not audit.ok
    assert {f"{s.name}@{s.version}" for s in audit.too_new} == {
        "pthread_key_create@GLIBC_2.34", "close_range@GLIBC_2.34"}
    text = format_report([audit]).splitlines()
    assert "  fix-up: made weak GLIBC_2.36 (libc.so.6) for arc4random" in text
    assert "  fix-up left GLIBC_2.34 (libc.so.6) hard: pthread_key_create not weak" in text
    with pytest.raises(AuditError) as caught:
        raise_on_violation([audit])
    message = str(caught.value)
    assert "libmixed.so needs GLIBC_2.34 > 2.31: " in message and "pthread_key_create@GLIBC_2.34" in message
    assert "the fix-up left GLIBC_2.34 hard, pthread_key_create not weak" in message
    assert "\n" not in message

    with pytest.raises(SmokeError, match=NOT_FOUND_2_34):  # and the old loader agrees
        smoke_sysroot([lib], bullseye, cache=smoke_cache)


# ------------------------------------------------------------------ the edit itself


@pytest.mark.parametrize("lib", ["weak_only"], indirect=True)
def test_only_the_vna_flags_bits_change_and_readelf_says_weak(lib: Path) -> None:
    before_bytes, before = lib.read_bytes(), readelf(lib)
    assert flags(lib) == {"GLIBC_2.34": False, "GLIBC_2.36": False, "GLIBC_2.2.5": False}
    fix_weak_needs(lib)
    after = lib.read_bytes()
    assert len(after) == len(before_bytes)
    changed = [i for i, (a, b) in enumerate(zip(before_bytes, after, strict=True)) if a != b]
    # vna_flags sits 4 bytes into its Elf_Vernaux; readelf locates each one for us.
    expected = {before.needs_offsets[v] + 4 for v in ("GLIBC_2.34", "GLIBC_2.36")}
    assert set(changed) == expected
    assert all(after[i] == before_bytes[i] | 0x2 for i in changed)
    assert flags(lib) == {"GLIBC_2.34": True, "GLIBC_2.36": True, "GLIBC_2.2.5": False}
    witness = readelf(lib)
    assert witness.needed == before.needed and witness.symbols - before.symbols == {
        ("close_range", "GLIBC_2.34", "libc.so.6", True), ("arc4random", "GLIBC_2.36", "libc.so.6", True)}
    assert [p.name for p in lib.parent.iterdir()] == [lib.name]  # no temporary left behind


@pytest.mark.parametrize("lib", ["weak_only"], indirect=True)
def test_second_run_changes_nothing_and_says_so(lib: Path) -> None:
    first = fix_weak_needs(lib)
    assert first.changed
    stat = lib.stat()
    content = lib.read_bytes()
    second = fix_weak_needs(lib)
    assert not second.changed and second.weakened == ()
    assert second.already_weak == first.weakened
    assert second.lines() == ["nothing to change, already weak: GLIBC_2.34 (libc.so.6), GLIBC_2.36 (libc.so.6)"]
    again = lib.stat()
    assert (again.st_ino, again.st_mtime_ns) == (stat.st_ino, stat.st_mtime_ns)  # not even rewritten
    assert lib.read_bytes() == content


@pytest.mark.parametrize("lib", ["relr"], indirect=True)
def test_a_need_no_symbol_uses_is_never_made_weak(lib: Path) -> None:
    """GLIBC_ABI_DT_RELR asks the loader for a feature: weakening it would hide a real failure."""
    report = fix_weak_needs(lib)
    assert [n.version for n in report.weakened] == ["GLIBC_2.34"]
    assert flags(lib)["GLIBC_ABI_DT_RELR"] is False
    assert not audit_library(lib, target_glibc="2.31", fixup=report).ok


@pytest.mark.parametrize("lib", ["weak_only"], indirect=True)
def test_fixing_through_a_symlink_edits_the_file_and_keeps_link_and_mode(lib: Path) -> None:
    lib.chmod(0o751)
    link = lib.with_name("libweakonly.so.1")
    link.symlink_to(lib.name)
    report = fix_weak_needs(link)
    assert report.path == str(link) and report.changed
    assert link.is_symlink() and os.readlink(link) == lib.name
    assert lib.stat().st_mode & 0o777 == 0o751
    assert flags(lib)["GLIBC_2.34"] is True


# ------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b"just some text\n", "not an ELF file"),
        (b"\x7fELF", "not an ELF file"),
        (b"\x7fELF\x01\x01\x01" + b"\0" * 9 + b"\x03\x00\x03\x00" + b"\0" * 40, "a 32-bit ELF for machine 3"),
        (b"\x7fELF\x02\x01\x01" + b"\0" * 9 + b"\x03\x00\x03\x00" + b"\0" * 40, "a 64-bit ELF for machine 3"),
        (b"\x7fELF\x02\x01\x01" + b"\0" * 9 + b"\x03\x00\x3e\x00" + b"\0" * 40, "cannot read its version needs"),
    ],
    ids=["text", "magic-only", "elf32-i386", "elf64-not-x86_64", "truncated"],
)
def test_bad_input_is_a_one_line_fixup_error(tmp_path: Path, content: bytes, says: str) -> None:
    bogus = tmp_path / "libbogus.so"
    bogus.write_bytes(content)
    with pytest.raises(FixupError) as caught:
        fix_weak_needs(bogus)
    message = str(caught.value)
    assert message.startswith(f"{bogus}: ") and says in message and "\n" not in message
    assert bogus.read_bytes() == content


def test_object_file_and_missing_file_are_fixup_errors(tmp_path: Path) -> None:
    src = tmp_path / "x.c"
    src.write_text("int x(void) { return 1; }\n")
    obj = tmp_path / "x.o"
    subprocess.run(["gcc", "-c", "-fPIC", "-o", str(obj), str(src)], check=True)
    with pytest.raises(FixupError, match=r"ELF type 1 is not a shared object \(ET_DYN\)"):
        fix_weak_needs(obj)
    with pytest.raises(FixupError, match="No such file"):
        fix_weak_needs(tmp_path / "absent.so")


def test_fixup_error_has_its_own_exit_code() -> None:
    codes: dict[int, list[str]] = {}
    pending: list[type[CompatError]] = [CompatError]
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        codes.setdefault(cls.exit_code, []).append(cls.__name__)
    assert codes[FixupError.exit_code] == ["FixupError"]


def test_report_is_typed_and_serialisable() -> None:
    report = FixupReport("x.so", (NeedChange("libc.so.6", "GLIBC_2.18", ("__cxa_thread_atexit_impl",)),), (), ())
    assert report.lines() == ["made weak GLIBC_2.18 (libc.so.6) for __cxa_thread_atexit_impl"]


# ------------------------------------------------------------------ invoke audit --fix


def invoke(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "invoke", *args], cwd=PROJECT_ROOT,
                          capture_output=True, text=True, timeout=300)


def test_invoke_audit_fix_text_then_json(built: dict[str, Path], tmp_path: Path) -> None:
    lib = Path(shutil.copy2(built["weak_only"], tmp_path / "libweakonly.so"))
    before = invoke("audit", "--glibc", "2.31", "--path", str(lib))
    assert before.returncode == AuditError.exit_code
    assert "close_range@GLIBC_2.34" in before.stderr and len(before.stderr.strip().splitlines()) == 1

    fixed = invoke("audit", "--fix", "--glibc", "2.31", "--path", str(lib))
    assert fixed.returncode == 0, fixed.stderr
    lines = fixed.stdout.splitlines()
    assert lines[0] == f"ok   {lib} (max GLIBC 2.2.5, target 2.31)"
    assert "  fix-up: made weak GLIBC_2.34 (libc.so.6) for close_range" in lines

    again = invoke("audit", "--fix", "--json", "--glibc", "2.31", "--path", str(lib))
    assert again.returncode == 0, again.stderr
    [entry] = json.loads(again.stdout)["libraries"]
    assert entry["ok"] is True and entry["fixup"]["changed"] is False
    assert entry["fixup"]["weakened"] == []
    assert [n["version"] for n in entry["fixup"]["already_weak"]] == ["GLIBC_2.34", "GLIBC_2.36"]


def test_invoke_audit_fix_on_a_non_elf_file_is_one_line_with_its_exit_code(tmp_path: Path) -> None:
    bogus = tmp_path / "notes.txt"
    bogus.write_text("not a library\n")
    result = invoke("audit", "--fix", "--glibc", "2.31", "--path", str(bogus))
    assert result.returncode == FixupError.exit_code
    expected = f"compatbuild: {bogus}: not an ELF file; the fix-up edits x86_64 or aarch64 shared objects only"
    assert result.stderr.strip() == expected
    assert "Traceback" not in result.stderr
