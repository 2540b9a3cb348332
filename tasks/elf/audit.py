"""Audit built shared libraries: symbol versions, DT_NEEDED, RPATH/RUNPATH.

Reads the ELF itself with pyelftools, so the answer does not depend on the host's
binutils. A library passes when it has no hard (non-weak) glibc version need newer than
the target, no hard ``GCC_``/``GLIBCXX_``/``CXXABI_``/``ZLIB_`` need beyond what the
target's libgcc_s, libstdc++ and libz define (:mod:`tasks.elf.floors`), no
absolute-path ``DT_NEEDED`` (the Fedora 20 ld.bfd bug) and needs only libraries from an
allow-list, and is of its target's arch (an x86_64 library for an aarch64 target fails, the
report naming both; ``arch`` in the JSON). Given the weak-version fix-up's report
(:mod:`tasks.elf.fixup`), it also says what the fix-up changed. What is not a regular
file, not a shared object or not of a known architecture (a 32-bit library, a ``.o``) is
refused with one line, never passed; the version needs are walked as ld.so walks them
(:mod:`tasks.elf.reading`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tasks.elf.fixup import VER_FLG_WEAK, FixupReport
from tasks.elf.floors import (
    TargetFloors,
    floors_from_glibc,
    glibc_newer,
    glibc_release,
    glibc_text,
    parse_glibc,
)
from tasks.elf.hostsyms import TargetLibraries, host_symbols_of
from tasks.elf.linkers import comment_strings, drops_retained, linker_of
from tasks.elf.reading import check_entry_sizes, check_header, open_elf, regular_file, version_needs
from tasks.elf.refusals import Refusal, loader_refusals
from tasks.elf.report import format_report, raise_on_violation, report_json
from tasks.errors import AuditError

if TYPE_CHECKING:
    from elftools.elf.elffile import ELFFile

__all__ = [  # the report functions live in audit_report; callers keep importing them from here
    "DEFAULT_ALLOWED_NEEDED", "VER_FLG_WEAK", "LibraryAudit", "RuntimeNeed", "SymbolNeed", "VersionNeed",
    "audit_library", "audit_paths", "distinct_paths", "format_report", "raise_on_violation", "report_json",
]

# What Rust std links on x86_64-unknown-linux-gnu (`rustc --print native-static-libs`:
# -lgcc_s -lutil -lrt -lpthread -lm -ldl -lc), plus the loader, which a cdylib needs for
# __tls_get_addr (thread_local!). --as-needed keeps only the used ones; before glibc 2.34
# (the Fedora 20 target) pthread, dl, rt and util are separate libraries, not stubs.
# libgcc_s.so.1 is GCC's unwinder (_Unwind_*), needed by panic=unwind.
DEFAULT_ALLOWED_NEEDED: frozenset[str] = frozenset(
    {"libc.so.6", "libm.so.6", "libdl.so.2", "libpthread.so.0", "librt.so.1", "libutil.so.1"}
    | {"ld-linux-x86-64.so.2", "ld-linux-aarch64.so.1", "libgcc_s.so.1"}
)


@dataclass(frozen=True)
class VersionNeed:
    """One ``Elf_Vernaux`` of ``.gnu.version_r``: a version needed from a library."""

    library: str
    version: str
    weak: bool


@dataclass(frozen=True)
class SymbolNeed:
    """An undefined dynamic symbol bound to a needed version.

    ``weak`` is the VER_FLG_WEAK flag of the *version need* the symbol is bound to, not
    the symbol's binding: the loader rejects a library over a missing hard version need
    even when every symbol using it is STB_WEAK (Rust std's __cxa_thread_atexit_impl).
    """

    name: str
    version: str
    library: str
    weak: bool

    def __str__(self) -> str:
        return f"{self.name}@{self.version} ({self.library})"


@dataclass(frozen=True)
class RuntimeNeed:
    """A hard need from libgcc_s, libstdc++ or libz (``GLIBCXX_3.4.30``) the target lacks.

    ``provided`` is the newest version of that family the target has (``GLIBCXX_3.4.19``).
    """

    library: str
    version: str
    provided: str
    symbols: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.version} ({self.library}) > {self.provided}"


@dataclass(frozen=True)
class LibraryAudit:
    """What one shared library needs from the system, judged against a target.

    ``max_glibc`` is the highest glibc release among the hard version needs, counting a
    marker such as ``GLIBC_ABI_DT_RELR`` as the release that introduced it (2.36).
    ``GLIBC_PRIVATE`` is not compared; ``GCC_``, ``GLIBCXX_``, ``CXXABI_`` and ``ZLIB_``
    needs are, against ``floors``, when it has a maximum for them (``too_new_runtime``).
    ``fixup`` is the weak-version fix-up's report, when the library went through it.
    """

    path: str
    needed: tuple[str, ...]
    rpath: tuple[str, ...]
    runpath: tuple[str, ...]
    soname: str | None
    version_needs: tuple[VersionNeed, ...]
    symbols: tuple[SymbolNeed, ...]
    max_glibc: str | None
    too_new: tuple[SymbolNeed, ...]
    too_new_weak: tuple[SymbolNeed, ...]
    absolute_needed: tuple[str, ...]
    unexpected_needed: tuple[str, ...]
    target_glibc: str
    too_new_runtime: tuple[RuntimeNeed, ...] = ()
    floors: TargetFloors | None = None
    fixup: FixupReport | None = None
    linker: str | None = None  # from .comment: "LLD 5.0.2"; None when the linker wrote nothing
    drops_retained: bool = False  # the linker ignores SHF_GNU_RETAIN (lld < 13)
    # Undefined symbols no needed library defines on the target: the host program's API
    # (PyDict_Next, lua_pushinteger). Informational: they do not make the audit fail.
    host_symbols: tuple[str, ...] = ()
    host_checked: str = ""  # the root whose libraries were read ("" : by the unversioned rule)
    # What the loader refuses that the file shows (tasks.elf.refusals): an executable stack and
    # text relocations fail the audit; static TLS warns with its size.
    loader_refusals: tuple[Refusal, ...] = ()
    arch: str = "x86_64"  # the library's own (its ELF e_machine): x86_64 or aarch64

    @property
    def target_arch(self) -> str | None:
        """The arch the target's libraries are (None: not checked, a bare ``--glibc`` audit)."""
        return self.floors.arch if self.floors is not None else None

    @property
    def wrong_arch(self) -> bool:
        """The library is of another arch than its target's: no loader there can map it."""
        return self.target_arch is not None and self.arch != self.target_arch

    @property
    def target(self) -> str:
        """The target's name as the report shows it: ``2.31``, or ``centos7 (glibc 2.17)``."""
        if self.floors is None or self.floors.name == f"glibc {self.target_glibc}":
            return self.target_glibc
        return f"{self.floors.name} (glibc {self.target_glibc})"

    @property
    def too_new_needs(self) -> tuple[VersionNeed, ...]:
        """Hard glibc version needs above the target: the loader rejects each one.

        Wider than ``too_new``, since a need may have no symbol (``GLIBC_ABI_DT_RELR``).
        """
        target = parse_glibc(self.target_glibc)
        return tuple(n for n in self.version_needs if not n.weak and glibc_newer(n.version, target))

    @property
    def ok(self) -> bool:
        """True when the library loads on the target and needs nothing odd."""
        return not (self.too_new or self.too_new_needs or self.too_new_runtime
                    or self.absolute_needed or self.unexpected_needed or self.wrong_arch
                    or any(r.error for r in self.loader_refusals))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: every field, plus ``ok``, ``target`` and ``too_new_needs``."""
        data = asdict(self)
        data["ok"] = self.ok
        data["target"] = self.target
        data["target_arch"] = self.target_arch
        data["too_new_needs"] = [asdict(need) for need in self.too_new_needs]
        if self.fixup is not None:
            data["fixup"]["changed"] = self.fixup.changed
        return data


_release = glibc_release


def _dynamic_strings(elf: ELFFile) -> dict[str, list[str]]:
    from elftools.elf.dynamic import DynamicSection

    found: dict[str, list[str]] = {t: [] for t in ("DT_NEEDED", "DT_RPATH", "DT_RUNPATH")}
    found["DT_SONAME"] = []
    for section in elf.iter_sections():
        if isinstance(section, DynamicSection):
            for tag in section.iter_tags():
                kind = str(tag.entry.d_tag)
                if kind in found:  # pyelftools sets .needed/.rpath/.runpath/.soname
                    found[kind].append(str(getattr(tag, kind[3:].lower())))
    return found


def _version_needs(elf: ELFFile) -> tuple[list[VersionNeed], dict[int, VersionNeed]]:
    from elftools.elf.gnuversions import GNUVerNeedSection

    needs: list[VersionNeed] = []
    by_index: dict[int, VersionNeed] = {}
    for section in elf.iter_sections():
        if isinstance(section, GNUVerNeedSection):
            for aux in version_needs(elf, section):  # as ld.so walks it: not by sh_info
                need = VersionNeed(aux.library, aux.version, bool(aux.flags & VER_FLG_WEAK))
                needs.append(need)
                by_index[aux.index] = need
    return needs, by_index


def _symbol_needs(elf: ELFFile, by_index: dict[int, VersionNeed]) -> list[SymbolNeed]:
    """Each undefined .dynsym entry whose .gnu.version index names a version need."""
    from elftools.elf.gnuversions import GNUVerSymSection
    from elftools.elf.sections import SymbolTableSection

    versym = next((s for s in elf.iter_sections() if isinstance(s, GNUVerSymSection)), None)
    if versym is None or not isinstance(versym.symboltable, SymbolTableSection):
        return []
    dynsym = versym.symboltable
    symbols: list[SymbolNeed] = []
    for index in range(1, min(dynsym.num_symbols(), versym.num_symbols())):
        symbol = dynsym.get_symbol(index)
        ndx = versym.get_symbol(index)["ndx"]  # a str for VER_NDX_LOCAL/GLOBAL: unversioned
        if symbol["st_shndx"] != "SHN_UNDEF" or not isinstance(ndx, int):
            continue
        need = by_index.get(ndx & 0x7FFF)  # bit 15 is the "hidden" flag
        if need is not None:
            symbols.append(SymbolNeed(symbol.name, need.version, need.library, need.weak))
    return symbols


def _newest_first(symbol: SymbolNeed) -> tuple[tuple[int, ...], str]:
    return (tuple(-part for part in glibc_release(symbol.version) or ()), symbol.name)


def _runtime_needs(needs: Sequence[VersionNeed], symbols: Sequence[SymbolNeed],
                   floors: TargetFloors) -> tuple[RuntimeNeed, ...]:
    """Hard GCC_/GLIBCXX_/CXXABI_/ZLIB_ needs the target does not define, with their symbols."""
    found: list[RuntimeNeed] = []
    for need in needs:
        if need.weak or floors.provides(need.version) is not False:
            continue
        family = need.version.partition("_")[0]
        users = tuple(s.name for s in symbols if (s.library, s.version) == (need.library, need.version))
        found.append(RuntimeNeed(need.library, need.version, f"{family}_{floors.maximum(family)}", users))
    return tuple(found)


def audit_library(
    path: Path,
    *,
    target_glibc: str | None = None,
    floors: TargetFloors | None = None,
    allowed_needed: frozenset[str] = DEFAULT_ALLOWED_NEEDED,
    fixup: FixupReport | None = None,
    libraries: TargetLibraries | None = None,
) -> LibraryAudit:
    """Read one ELF shared object and judge it against a target.

    The target is ``floors`` (:func:`tasks.elf.floors.floors_for`), or else only a glibc
    release, ``target_glibc`` (e.g. ``"2.17"``). ``symbols`` lists only versioned
    undefined symbols: an unversioned one (``__gmon_start__``) names no version that could
    be too new. An absolute ``DT_NEEDED`` is also unexpected only when its file name is not
    allowed. ``fixup``, the fix-up's report for this file, is carried into the result.
    ``host_symbols`` are checked against ``libraries`` (the target's own: a sysroot's) when
    given, else by the rule that an unversioned undefined symbol is the host's
    (:mod:`tasks.elf.hostsyms`).
    """
    from elftools.common.exceptions import ELFError

    if floors is None:
        if target_glibc is None:
            raise AuditError("audit: no target (give a target glibc such as 2.17, or target floors)")
        floors = floors_from_glibc(target_glibc)
    target = parse_glibc(floors.glibc)
    try:
        regular_file(path, AuditError, "the audit reads")  # a FIFO would block the open, /dev/zero the read
        with open(path, "rb") as stream:
            elf = open_elf(stream)  # not ELF at all: "not a readable ELF shared object: Magic number ..."
            machine = check_header(path, stream, AuditError, "the audit reads", "audit")
            if elf.num_sections() == 0:
                raise AuditError(f"{path}: ELF has no section headers; cannot read versions")
            check_entry_sizes(elf)
            dynamic = _dynamic_strings(elf)
            linker = linker_of(comment_strings(elf))
            needs, by_index = _version_needs(elf)
            symbols = sorted(_symbol_needs(elf, by_index), key=_newest_first)
            host = host_symbols_of(elf, dynamic["DT_NEEDED"], libraries)
            refused = loader_refusals(elf)
    except (ELFError, OSError) as error:
        reason = getattr(error, "strerror", None) or str(error) or type(error).__name__
        raise AuditError(f"{path}: not a readable ELF shared object: {reason}") from error

    hard = [r for n in needs if not n.weak and (r := glibc_release(n.version)) is not None]
    newer = [s for s in symbols if glibc_newer(s.version, target)]
    needed = tuple(dynamic["DT_NEEDED"])
    return LibraryAudit(
        path=str(path),
        needed=needed,
        rpath=tuple(p for entry in dynamic["DT_RPATH"] for p in entry.split(":")),
        runpath=tuple(p for entry in dynamic["DT_RUNPATH"] for p in entry.split(":")),
        soname=dynamic["DT_SONAME"][0] if dynamic["DT_SONAME"] else None,
        version_needs=tuple(needs),
        symbols=tuple(symbols),
        max_glibc=glibc_text(max(hard)) if hard else None,
        too_new=tuple(s for s in newer if not s.weak),
        too_new_weak=tuple(s for s in newer if s.weak),
        absolute_needed=tuple(n for n in needed if "/" in n),
        unexpected_needed=tuple(n for n in needed if n.rsplit("/", 1)[-1] not in allowed_needed),
        target_glibc=glibc_text(target),
        too_new_runtime=_runtime_needs(needs, symbols, floors),
        floors=floors,
        fixup=fixup,
        linker=linker,
        drops_retained=drops_retained(linker),
        host_symbols=tuple(s.name for s in host),
        host_checked=str(libraries.root) if libraries is not None else "",
        loader_refusals=refused,
        arch=machine.name,
    )


def distinct_paths(paths: Iterable[Path]) -> list[Path]:
    """``paths`` in order, each file once: a second name for one file (the same path again, a
    symlink to it) is dropped, so a fix-up runs once per file and its report is not lost to a
    second run's "nothing to change"."""
    seen: dict[Path, Path] = {}
    for path in map(Path, paths):
        seen.setdefault(path.resolve(), path)
    return list(seen.values())


def audit_paths(
    paths: Iterable[Path],
    *,
    target_glibc: str | None = None,
    floors: TargetFloors | None = None,
    allowed_needed: frozenset[str] = DEFAULT_ALLOWED_NEEDED,
    fixups: Sequence[FixupReport] = (),
    sysroot: Path | None = None,
) -> list[LibraryAudit]:
    """Audit every path, in order; the first unreadable one raises AuditError.

    ``fixups`` are fix-up reports (:func:`tasks.elf.fixup.fix_weak_needs`); each is
    attached to the audit of the path it names. With ``sysroot``, host symbols are checked
    against its libraries.
    """
    libraries = TargetLibraries(Path(sysroot)) if sysroot is not None else None
    by_path = {Path(report.path).resolve(): report for report in fixups}
    return [
        audit_library(Path(p), target_glibc=target_glibc, floors=floors, allowed_needed=allowed_needed,
                      fixup=by_path.get(Path(p).resolve()), libraries=libraries)
        for p in paths
    ]
