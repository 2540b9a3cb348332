"""The audit and the fix-up on EM_AARCH64, and a library of another arch than its target's.

Libraries are built here by the pinned zig for aarch64 (``zig cc -target aarch64-linux-gnu.<glibc>``)
and by gcc for x86_64. An aarch64 library is audited against centos7-aarch64's floors (glibc
2.17, libgcc_s to GCC_4.7.0); an x86_64 one offered to that target fails the audit naming both
arches, and the JSON carries each library's arch. The weak trap on aarch64: linked by
rust-lld against bookworm-arm64's libc (2.36), a weak ``close_range`` (glibc 2.34) is written
as a hard need, which bullseye-arm64's 2.31 loader refuses under qemu; after the fix-up it
loads. (zig itself writes weak references unversioned, so it sets no such trap.)
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tasks import pipeline
from tasks.backends import zigtools
from tasks.dlopen import matrix
from tasks.dlopen.harness import CrossCC
from tasks.dlopen.smoke import smoke_sysroot
from tasks.dlopen.sysroot import make_sysroot_from_debs
from tasks.elf.audit import audit_library
from tasks.elf.fixup import fix_weak_needs
from tasks.elf.floors import floors_from_glibc, resolve_floors
from tasks.elf.report import format_report, report_json, violation
from tasks.errors import AuditError
from tasks.inputs import lockfile
from tasks.settings import PROJECT_ROOT, Settings
from tasks.store import Store

LOCK = PROJECT_ROOT / "rsrc.lock.toml"
WEAK_CLOSE_RANGE = """
extern int close_range(unsigned int first, unsigned int last, int flags) __attribute__((weak));
int test(void) { return close_range ? 1 : 0; }
"""
GCC_48 = """
extern void __cpu_indicator_init(void);
int test(void) { __cpu_indicator_init(); return 0; }
"""


def quiet(_line: str) -> None:
    pass


@pytest.fixture(scope="module")
def store_settings(profile_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(lock=LOCK, cache=profile_cache / "store", out=tmp_path_factory.mktemp("o"), progress="never")


@pytest.fixture(scope="module")
def zig(store_settings: Settings) -> CrossCC:
    lock = lockfile.load(LOCK, "centos7-aarch64")
    pipeline.inputs_ready(lock, store_settings, zigtools.ARTIFACTS, quiet)
    tools = zigtools.install(lock, Store(store_settings.cache), store_settings.cache, log=quiet)
    return CrossCC(tools.zig, store_settings.cache / "zig" / "cache")


def aarch64_lib(zig: CrossCC, where: Path, source: str, glibc: str = "2.17") -> Path:
    (where / "lib.c").write_text(source)
    lib = where / "liba64.so"
    subprocess.run([str(zig.zig), "cc", "-target", f"aarch64-linux-gnu.{glibc}", "-shared", "-fPIC", "-O1",
                    "-o", str(lib), str(where / "lib.c")], check=True, env=zig.env())
    return lib


def x86_lib(where: Path) -> Path:
    (where / "x.c").write_text("int test(void) { return 0; }\n")
    lib = where / "libx86.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(lib), str(where / "x.c")], check=True)
    return lib


def test_an_aarch64_library_is_audited_at_centos7_aarch64s_floors(zig: CrossCC, tmp_path: Path) -> None:
    lib = aarch64_lib(zig, tmp_path, "int test(void) { return 0; }\n")
    audit = audit_library(lib, floors=resolve_floors("centos7-aarch64", "2.17", "aarch64"))
    assert audit.ok and audit.arch == "aarch64" and audit.target_arch == "aarch64", format_report([audit])
    doc = json.loads(report_json([audit]))["libraries"][0]
    assert (doc["arch"], doc["target_arch"], doc["ok"]) == ("aarch64", "aarch64", True)


def test_a_library_of_another_arch_than_the_targets_fails_naming_both(zig: CrossCC, tmp_path: Path) -> None:
    x86 = x86_lib(tmp_path)
    a64 = aarch64_lib(zig, tmp_path, "int test(void) { return 0; }\n")
    on_a64 = audit_library(x86, floors=resolve_floors("centos7-aarch64", "2.17", "aarch64"))
    on_x86 = audit_library(a64, floors=resolve_floors("centos7", "2.17", "x86_64"))
    assert not on_a64.ok and not on_x86.ok
    error = violation([on_a64, on_x86])
    assert error is not None and "\n" not in str(error)
    assert ("libx86.so is an x86_64 library; the target centos7-aarch64 (glibc 2.17) is aarch64" in str(error)
            and "liba64.so is an aarch64 library; the target centos7 (glibc 2.17) is x86_64" in str(error))
    assert "FAIL" in format_report([on_a64]) and "is an x86_64 library" in format_report([on_a64])
    assert audit_library(a64, target_glibc="2.17").ok  # a bare glibc audit checks no arch


def test_aarch64_floors_start_at_glibc_2_17_and_stop_gcc_at_4_7(zig: CrossCC, tmp_path: Path) -> None:
    with pytest.raises(AuditError, match="glibc 2.16 predates aarch64: its first glibc is 2.17"):
        floors_from_glibc("2.16", "aarch64")
    floors = resolve_floors("centos7-aarch64", "2.17", "aarch64")
    assert (floors.gcc, floors.glibcxx, floors.arch) == ("4.7.0", "3.4.19", "aarch64")
    assert floors.provides("GCC_4.8.0") is False and resolve_floors("centos7", "2.17").provides("GCC_4.8.0")
    with pytest.raises(AuditError, match="target centos7 is x86_64, but aarch64 was asked for"):
        resolve_floors("centos7", "2.17", "aarch64")


def arm64_sysroot(settings: Settings, suite: str, where: Path) -> Path:
    lock = lockfile.load(LOCK, "centos7-aarch64")
    _glibc, debs = matrix.deb_suites(lock)[suite]
    pipeline.inputs_ready(lock, settings, [a.name for a in debs], quiet)
    store = Store(settings.cache)
    return make_sysroot_from_debs([store.path(a.sha256) for a in debs], where / suite, log=quiet)


@pytest.fixture(scope="module")
def bullseye_arm64(store_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return arm64_sysroot(store_settings, "bullseye-arm64", tmp_path_factory.mktemp("elf-sysroots"))


@pytest.fixture(scope="module")
def bookworm_arm64(store_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return arm64_sysroot(store_settings, "bookworm-arm64", tmp_path_factory.mktemp("elf-sysroots"))


def weak_trap(zig: CrossCC, libc_sysroot: Path, where: Path) -> Path:
    """WEAK_CLOSE_RANGE compiled by zig for aarch64, linked by rust-lld against ``libc_sysroot``'s libc."""
    (where / "weak.c").write_text(WEAK_CLOSE_RANGE)
    obj, lib = where / "weak.o", where / "libweak.so"
    subprocess.run([str(zig.zig), "cc", "-target", "aarch64-linux-gnu", "-c", "-fPIC", "-O1", "-o", str(obj),
                    str(where / "weak.c")], check=True, env=zig.env())
    sysroot = subprocess.run(["rustc", "--print", "sysroot"], capture_output=True, text=True, check=True).stdout
    lld = Path(sysroot.strip()) / "lib" / "rustlib" / "x86_64-unknown-linux-gnu" / "bin" / "rust-lld"
    subprocess.run([str(lld), "-flavor", "gnu", "-shared", "-o", str(lib), str(obj),
                    str(libc_sysroot / "lib" / "aarch64-linux-gnu" / "libc.so.6")], check=True)
    return lib


def test_the_fix_up_weakens_an_aarch64_need_and_the_old_loader_then_takes_it(
        zig: CrossCC, bullseye_arm64: Path, bookworm_arm64: Path, tmp_path: Path) -> None:
    lib = weak_trap(zig, bookworm_arm64, tmp_path)
    floors = floors_from_glibc("2.31", "aarch64")
    before = audit_library(lib, floors=floors)
    assert [n.version for n in before.too_new_needs] == ["GLIBC_2.34"]  # the weak trap, on aarch64 too
    [refused] = smoke_sysroot([lib], bullseye_arm64, cache=tmp_path / "cache", strict=False, cross=zig)
    assert not refused.ok and "version `GLIBC_2.34' not found" in refused.text, refused.text
    report = fix_weak_needs(lib)
    assert [n.version for n in report.weakened] == ["GLIBC_2.34"]
    after = audit_library(lib, floors=floors, fixup=report)
    assert after.ok and after.arch == "aarch64", format_report([after])
    [loaded] = smoke_sysroot([lib], bullseye_arm64, cache=tmp_path / "cache", strict=False, cross=zig)
    assert loaded.ok, loaded.output
