"""What the loader refuses that the audit sees statically: an executable stack, text relocations, static TLS.

Crafted C libraries, built here by gcc and GNU ld: an assembly file without
``.note.GNU-stack`` gives ``PT_GNU_STACK RWE``; ``movabs $sym`` in .text with ``-z notext``
gives ``DT_TEXTREL``; a 4 KiB ``initial-exec`` thread-local gives ``DF_STATIC_TLS`` and a
``R_X86_64_TPOFF64``. The execstack one really fails on trixie's glibc 2.41 (its pinned
.debs, a sysroot) with the loader's own words and loads on bullseye's 2.31; the audit names
each. compatbuild's own outputs (zig, and rust-lld/lld in the builder image) have none.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from tasks import pipeline
from tasks.dlopen import matrix
from tasks.dlopen.smoke import smoke_sysroot
from tasks.dlopen.sysroot import make_sysroot_from_debs
from tasks.elf.refusals import Refusal, loader_refusals
from tasks.inputs import lockfile
from tasks.settings import PROJECT_ROOT, Settings
from tasks.store import Store

LOCK = PROJECT_ROOT / "rsrc.lock.toml"
EXECSTACK_S = ".text\n.globl asmfn\nasmfn:\n ret\n"  # no .note.GNU-stack: GNU ld makes the stack RWE
TEXTREL_S = ('.section .note.GNU-stack,"",@progbits\n.data\n.globl gv\ngv: .quad 7\n.text\n.globl test\n'
             ".type test,@function\ntest:\n movabs $gv, %rax\n movl (%rax), %eax\n ret\n")
TLS_C = ('__thread char big[4096] __attribute__((tls_model("initial-exec")));\n'
         "int test(void) { big[1] = 1; return big[1]; }\n")


def quiet(_line: str) -> None:
    pass


def gcc_library(tmp: Path, name: str, sources: dict[str, str], *flags: str) -> Path:
    for file, text in sources.items():
        (tmp / file).write_text(text)
    lib = tmp / f"lib{name}.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(lib), *sources, *flags], cwd=tmp, check=True,
                   capture_output=True)
    return lib


def refusals(lib: Path) -> tuple[Refusal, ...]:
    with lib.open("rb") as f:
        return loader_refusals(ELFFile(f))


@pytest.fixture(scope="module")
def crafted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("refusals")
    return {
        "execstack": gcc_library(tmp, "execstack", {"plain.c": "int test(void) { return 0; }\n",
                                                    "exec.S": EXECSTACK_S}),
        "textrel": gcc_library(tmp, "textrel", {"tr.S": TEXTREL_S}, "-Wl,-z,notext"),
        "tls": gcc_library(tmp, "tls", {"tls.c": TLS_C}),
        "plain": gcc_library(tmp, "plain", {"plain.c": "int test(void) { return 0; }\n"}),
    }


@pytest.fixture(scope="module")
def settings(profile_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(lock=LOCK, cache=profile_cache / "store", out=tmp_path_factory.mktemp("refusal-out"),
                    progress="never", backend="zig")


def pinned_sysroot(settings: Settings, suite: str) -> Path:
    """The sysroot of ``suite``'s pinned .debs, as `smoke --matrix` makes it."""
    lock = lockfile.load(LOCK, "centos7")
    _glibc, debs = matrix.deb_suites(lock)[suite]
    pipeline.inputs_ready(lock, settings, [a.name for a in debs], quiet)
    return make_sysroot_from_debs([Store(settings.cache).path(a.sha256) for a in debs],
                                  settings.cache / "sysroots" / suite, log=quiet)


def test_each_refusal_is_seen_in_the_file(crafted: dict[str, Path]) -> None:
    [stack] = refusals(crafted["execstack"])
    assert stack.kind == "executable stack" and stack.error and "PT_GNU_STACK is RWE" in stack.detail
    assert "glibc >= 2.41" in stack.bites
    [text] = refusals(crafted["textrel"])
    assert text.kind == "text relocations" and text.error
    [tls] = refusals(crafted["tls"])
    assert tls.kind == "static TLS" and not tls.error  # a warning, with its size
    assert tls.detail == "4096 bytes; DF_STATIC_TLS, 1 initial-exec TLS relocation"
    assert refusals(crafted["plain"]) == ()


def test_the_execstack_library_fails_on_trixie_and_loads_on_bullseye(
    crafted: dict[str, Path], settings: Settings, tmp_path: Path,
) -> None:
    trixie, bullseye = pinned_sysroot(settings, "trixie"), pinned_sysroot(settings, "bullseye")
    [bad] = smoke_sysroot([crafted["execstack"]], trixie, cache=tmp_path, strict=False)
    assert not bad.ok and "cannot enable executable stack as shared object requires: Invalid argument" in (
        bad.error or ""), bad.output
    [good] = smoke_sysroot([crafted["execstack"]], bullseye, cache=tmp_path, strict=False)
    assert good.ok, good.output
    for root in (trixie, bullseye):  # 4 KiB of initial-exec TLS is more than either keeps spare
        [tls] = smoke_sysroot([crafted["tls"]], root, cache=tmp_path, strict=False)
        assert not tls.ok and "cannot allocate memory in static TLS block" in (tls.error or ""), tls.output


def test_compatbuilds_own_zig_outputs_have_none(settings: Settings) -> None:
    lock = lockfile.load(LOCK, "centos7")
    for crate in (PROJECT_ROOT / "examples" / "hello", PROJECT_ROOT / "tests" / "crates" / "with_cc"):
        for lib in pipeline.build(None, lock, settings, crate, log=quiet, on_line=quiet).libraries:
            assert refusals(lib) == (), lib
            stack = [ln for ln in subprocess.run(["readelf", "-lW", str(lib)], capture_output=True, text=True,
                                                 check=True).stdout.splitlines() if "GNU_STACK" in ln]
            assert len(stack) == 1 and stack[0].split()[-2] == "RW", stack  # readelf's evidence: not RWE


@pytest.mark.docker
def test_compatbuilds_own_builder_image_outputs_have_none(profile_settings: Settings, tmp_path: Path) -> None:
    import dataclasses

    from tasks.builder.docker_client import connect

    dk = connect()
    lock = lockfile.load(profile_settings.lock)
    for linker in ("rust-lld", "llvm"):
        s = dataclasses.replace(profile_settings, out=tmp_path / linker, linker=linker)
        for lib in pipeline.build(dk, lock, s, PROJECT_ROOT / "examples" / "hello", log=quiet,
                                  on_line=quiet).libraries:
            assert refusals(lib) == (), (linker, lib)


def test_the_audit_fails_an_executable_stack_and_text_relocations_and_warns_of_static_tls(
    crafted: dict[str, Path],
) -> None:
    from tasks.elf.audit import audit_library, format_report
    from tasks.elf.report import violation

    stack = audit_library(crafted["execstack"], target_glibc="2.17")
    assert not stack.ok
    report = format_report([stack])
    assert ("  executable stack (PT_GNU_STACK is RWE): dlopen fails on glibc >= 2.41 "
            "(cannot enable executable stack)") in report.splitlines()
    assert "libexecstack.so has executable stack" in str(violation([stack]))
    text = audit_library(crafted["textrel"], target_glibc="2.17")
    assert not text.ok and "libtextrel.so has text relocations (DT_TEXTREL)" in str(violation([text]))
    tls = audit_library(crafted["tls"], target_glibc="2.17")
    assert tls.ok  # a warning: it fails only when it outgrows glibc's surplus
    assert any(ln.startswith("  warning: static TLS (4096 bytes;") for ln in format_report([tls]).splitlines())
    assert list(tls.to_dict()["loader_refusals"]) == [{"kind": "static TLS", "error": False,
                                                 "detail": "4096 bytes; DF_STATIC_TLS, 1 initial-exec TLS relocation",
                                                 "bites": tls.loader_refusals[0].bites}]
    assert audit_library(crafted["plain"], target_glibc="2.17").loader_refusals == ()
