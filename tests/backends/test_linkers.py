"""Which linker wrote a library (.comment), and what each linker strategy keeps.

The unit tests read real files built here: gcc links with GNU ld (which records nothing),
the host's cargo links with its rust-lld (LLD 22 records itself).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tasks.elf.audit import audit_library, format_report
from tasks.elf.linkers import drops_retained, linker_of

CRATES = Path(__file__).resolve().parents[1] / "crates"


@pytest.mark.parametrize(
    ("comments", "linker", "drops"),
    [
        (["rustc version 1.90.0", "Linker: LLD 5.0.2", "GCC: (GNU) 4.8.3"], "LLD 5.0.2", True),
        (["Linker: LLD 11.0.1"], "LLD 11.0.1", True),
        (["Linker: LLD 13.0.0 (https://github.com/llvm/llvm-project abc)"], "LLD 13.0.0", False),
        (["Linker: LLD 22.1.2 (/checkout/src/llvm-project/llvm 1cb4e38)"], "LLD 22.1.2", False),
        (["mold 2.4.0 (compatible with GNU ld)"], "mold 2.4", False),
        (["GCC: (Debian 12.2.0-14) 12.2.0"], None, False),
        ([], None, False),
    ],
)
def test_linker_is_read_from_comment_strings(comments: list[str], linker: str | None, drops: bool) -> None:
    assert linker_of(comments) == linker
    assert drops_retained(linker) is drops


def test_gnu_ld_records_no_linker_and_the_audit_says_none(tmp_path: Path) -> None:
    src = tmp_path / "a.c"
    src.write_text("int f(void) { return 1; }\n")
    lib = tmp_path / "liba.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(lib), str(src)], check=True)
    audit = audit_library(lib, target_glibc="2.17")
    assert audit.linker is None and not audit.drops_retained
    assert "linked by" not in format_report([audit])


def test_a_rust_lld_link_is_named_in_the_audit(tmp_path: Path) -> None:
    crate = tmp_path / "retain"
    shutil.copytree(CRATES / "retain", crate)
    subprocess.run(["cargo", "build", "--release", "-q", "--offline"], cwd=crate, check=True)
    lib = crate / "target" / "release" / "libretain.so"
    audit = audit_library(lib, target_glibc="2.36")
    assert audit.linker is not None and audit.linker.startswith("LLD ")
    assert not audit.drops_retained
    assert f"linked by {audit.linker}" in format_report([audit])
    assert audit.to_dict()["linker"] == audit.linker


# ----------------------------------------------------------------------------- both strategies, for real
# The test profile's llvm stage installs Debian's clang-11 and lld-11 under the names the
# real LLVM 5.0.2 stage gives them (building LLVM takes hours); rust-lld is the packed
# toolchain's own (LLD 22 for rustc 1.95).


def _sections(lib: Path) -> set[str]:
    from elftools.elf.elffile import ELFFile

    with lib.open("rb") as f:
        return {s.name for s in ELFFile(f).iter_sections()}


@pytest.mark.docker
@pytest.mark.parametrize("linker", ["llvm", "rust-lld"])
def test_each_linker_strategy_builds_a_library_that_loads_and_keeps_what_it_should(
    docker_client, profile_settings, tmp_path: Path, linker: str  # type: ignore[no-untyped-def]
) -> None:
    import dataclasses

    from tasks import pipeline
    from tasks.inputs import lockfile

    lock = lockfile.load(profile_settings.lock, linker=linker)
    settings = dataclasses.replace(profile_settings, out=tmp_path / "out")
    crate = tmp_path / "retain"
    shutil.copytree(CRATES / "retain", crate)
    lines: list[str] = []
    result = pipeline.build(docker_client, lock, settings, crate, log=lines.append, on_line=lines.append)
    [lib] = result.libraries
    audit = audit_library(lib, target_glibc=lock.target.glibc)
    sections = _sections(lib)
    assert {".init_array", "compatbuild_reg"} <= sections  # every linker keeps these
    assert audit.linker is not None and audit.linker.startswith("LLD ")
    if linker == "rust-lld":
        assert int(audit.linker.split()[1].split(".")[0]) >= 13
        assert "compatbuild_used" in sections and not audit.drops_retained
    else:  # lld 11 here, 5.0.2 in the real image: both ignore SHF_GNU_RETAIN
        assert "compatbuild_used" not in sections and audit.drops_retained
        assert "ignores the retain flag" in format_report([audit])
        # `invoke build` says it the first time a cache meets that linker, not on every build
        fresh = dataclasses.replace(settings, cache=tmp_path / "said-cache")
        assert pipeline.retain_note_due(fresh, [audit]) is True
        assert pipeline.retain_note_due(fresh, [audit]) is False
        assert "ignores the retain flag" not in format_report([audit], retain_note=False)
    [ok] = pipeline.smoke(docker_client, lock, settings, [lib], log=lines.append, on_line=lines.append)
    assert "retain: constructor 7, registry entries 3" in ok.output
