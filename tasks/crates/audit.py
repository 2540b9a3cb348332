"""Audit built shared libraries: glibc symbol versions, DT_NEEDED, RPATH/RUNPATH.

Reads the ELF itself with pyelftools, so the answer does not depend on the host's
binutils. A library passes when it has no hard (non-weak) glibc version need newer than
the target, no absolute-path ``DT_NEEDED`` (the Fedora 20 ld.bfd bug) and needs only
libraries from an allow-list.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from elftools.common.exceptions import ELFError
from elftools.elf.dynamic import DynamicSection
from elftools.elf.elffile import ELFFile
from elftools.elf.gnuversions import GNUVerNeedSection, GNUVerSymSection
from elftools.elf.sections import SymbolTableSection

from tasks.errors import AuditError

VER_FLG_WEAK = 0x2  # vna_flags bit: ld.so skips a missing weak version (ldd -v reports it)

# What Rust std links on x86_64-unknown-linux-gnu (`rustc --print native-static-libs`:
# -lgcc_s -lutil -lrt -lpthread -lm -ldl -lc), plus the loader, which a cdylib needs for
# __tls_get_addr (thread_local!). --as-needed keeps only the used ones; before glibc 2.34
# (the Fedora 20 target) pthread, dl, rt and util are separate libraries, not stubs.
# libgcc_s.so.1 is GCC's unwinder (_Unwind_*), needed by panic=unwind.
DEFAULT_ALLOWED_NEEDED: frozenset[str] = frozenset(
    {"libc.so.6", "libm.so.6", "libdl.so.2", "libpthread.so.0", "librt.so.1", "libutil.so.1"}
    | {"ld-linux-x86-64.so.2", "libgcc_s.so.1"}
)

# Version names that are not GLIBC_<release> but were introduced by a glibc release.
# GLIBC_ABI_DT_RELR: ld >= 2.38 records it for -z pack-relative-relocs; glibc 2.36 added it.
_GLIBC_MARKERS: dict[str, tuple[int, ...]] = {"GLIBC_ABI_DT_RELR": (2, 36)}
_GLIBC_RE = re.compile(r"GLIBC_(\d+(?:\.\d+)+)")
_TARGET_RE = re.compile(r"(?:GLIBC_)?(\d+(?:\.\d+)+)")


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
class LibraryAudit:
    """What one shared library needs from the system, judged against a target glibc.

    ``max_glibc`` is the highest glibc release among the hard version needs, counting a
    marker such as ``GLIBC_ABI_DT_RELR`` as the release that introduced it (2.36).
    ``GLIBC_PRIVATE`` and other libraries' versions (``GCC_3.0``) are not compared.
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

    @property
    def too_new_needs(self) -> tuple[VersionNeed, ...]:
        """Hard glibc version needs above the target: the loader rejects each one.

        Wider than ``too_new``, since a need may have no symbol (``GLIBC_ABI_DT_RELR``).
        """
        target = _parse_target(self.target_glibc)
        return tuple(n for n in self.version_needs if not n.weak and _newer(n.version, target))

    @property
    def ok(self) -> bool:
        """True when the library loads under the target glibc and needs nothing odd."""
        return not (
            self.too_new or self.too_new_needs or self.absolute_needed or self.unexpected_needed
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: every field, plus ``ok`` and ``too_new_needs``."""
        data = asdict(self)
        data["ok"] = self.ok
        data["too_new_needs"] = [asdict(need) for need in self.too_new_needs]
        return data


def _release(version: str) -> tuple[int, ...] | None:
    """``GLIBC_2.3.4`` -> (2, 3, 4); a known marker -> its release; anything else -> None."""
    match = _GLIBC_RE.fullmatch(version)
    if match:
        return tuple(int(part) for part in match.group(1).split("."))
    return _GLIBC_MARKERS.get(version)


def _newer(version: str, target: tuple[int, ...]) -> bool:
    release = _release(version)
    return release is not None and release > target


def _parse_target(target_glibc: str) -> tuple[int, ...]:
    match = _TARGET_RE.fullmatch(target_glibc.strip())
    if not match:
        raise AuditError(f"target glibc must look like 2.17, got {target_glibc!r}")
    return tuple(int(part) for part in match.group(1).split("."))


def _text(release: tuple[int, ...]) -> str:
    return ".".join(str(part) for part in release)


def _dynamic_strings(elf: ELFFile) -> dict[str, list[str]]:
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
    needs: list[VersionNeed] = []
    by_index: dict[int, VersionNeed] = {}
    for section in elf.iter_sections():
        if isinstance(section, GNUVerNeedSection):
            for verneed, auxiliaries in section.iter_versions():
                for aux in auxiliaries:
                    weak = bool(aux["vna_flags"] & VER_FLG_WEAK)
                    need = VersionNeed(str(verneed.name), aux.name, weak)
                    needs.append(need)
                    by_index[int(aux["vna_other"])] = need
    return needs, by_index


def _symbol_needs(elf: ELFFile, by_index: dict[int, VersionNeed]) -> list[SymbolNeed]:
    """Each undefined .dynsym entry whose .gnu.version index names a version need."""
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
    return (tuple(-part for part in _release(symbol.version) or ()), symbol.name)


def audit_library(
    path: Path,
    *,
    target_glibc: str,
    allowed_needed: frozenset[str] = DEFAULT_ALLOWED_NEEDED,
) -> LibraryAudit:
    """Read one ELF shared object and judge it against ``target_glibc`` (e.g. ``"2.17"``).

    ``symbols`` lists only versioned undefined symbols: an unversioned one
    (``__gmon_start__``) names no version that could be too new. An absolute
    ``DT_NEEDED`` is also unexpected only when its file name is not allowed.
    """
    target = _parse_target(target_glibc)
    try:
        with open(path, "rb") as stream:
            elf = ELFFile(stream)
            if elf.num_sections() == 0:
                raise AuditError(f"{path}: ELF has no section headers; cannot read versions")
            dynamic = _dynamic_strings(elf)
            needs, by_index = _version_needs(elf)
            symbols = sorted(_symbol_needs(elf, by_index), key=_newest_first)
    except (ELFError, OSError) as error:
        reason = getattr(error, "strerror", None) or str(error) or type(error).__name__
        raise AuditError(f"{path}: not a readable ELF shared object: {reason}") from error

    hard = [r for n in needs if not n.weak and (r := _release(n.version)) is not None]
    newer = [s for s in symbols if _newer(s.version, target)]
    needed = tuple(dynamic["DT_NEEDED"])
    return LibraryAudit(
        path=str(path),
        needed=needed,
        rpath=tuple(p for entry in dynamic["DT_RPATH"] for p in entry.split(":")),
        runpath=tuple(p for entry in dynamic["DT_RUNPATH"] for p in entry.split(":")),
        soname=dynamic["DT_SONAME"][0] if dynamic["DT_SONAME"] else None,
        version_needs=tuple(needs),
        symbols=tuple(symbols),
        max_glibc=_text(max(hard)) if hard else None,
        too_new=tuple(s for s in newer if not s.weak),
        too_new_weak=tuple(s for s in newer if s.weak),
        absolute_needed=tuple(n for n in needed if "/" in n),
        unexpected_needed=tuple(n for n in needed if n.rsplit("/", 1)[-1] not in allowed_needed),
        target_glibc=_text(target),
    )


def audit_paths(
    paths: Iterable[Path],
    *,
    target_glibc: str,
    allowed_needed: frozenset[str] = DEFAULT_ALLOWED_NEEDED,
) -> list[LibraryAudit]:
    """Audit every path, in order; the first unreadable one raises AuditError."""
    return [
        audit_library(Path(p), target_glibc=target_glibc, allowed_needed=allowed_needed)
        for p in paths
    ]


def format_report(audits: Sequence[LibraryAudit]) -> str:
    """Human-readable report: one ok/FAIL line per library, then what is wrong with it."""
    lines: list[str] = []
    for audit in audits:
        status = "ok  " if audit.ok else "FAIL"
        glibc = audit.max_glibc or "none"
        lines.append(f"{status} {audit.path} (max GLIBC {glibc}, target {audit.target_glibc})")
        lines.extend(f"  {symbol}" for symbol in audit.too_new)
        used = {(s.library, s.version) for s in audit.symbols}
        lines.extend(
            f"  {need.version} ({need.library}), a version need no symbol uses"
            for need in audit.too_new_needs
            if (need.library, need.version) not in used
        )
        if audit.too_new_weak:
            lines.append("  weak version needs (informational: ld.so skips the version check):")
            lines.extend(f"    {symbol}" for symbol in audit.too_new_weak)
        lines.extend(f"  absolute DT_NEEDED: {name}" for name in audit.absolute_needed)
        lines.extend(f"  unexpected DT_NEEDED: {name}" for name in audit.unexpected_needed)
        if audit.rpath:
            lines.append(f"  RPATH: {':'.join(audit.rpath)}")
        if audit.runpath:
            lines.append(f"  RUNPATH: {':'.join(audit.runpath)}")
    return "\n".join(lines)


def report_json(audits: Sequence[LibraryAudit]) -> str:
    """The audits as JSON for CI: ``{"ok": bool, "libraries": [LibraryAudit.to_dict()]}``."""
    document = {"ok": all(a.ok for a in audits), "libraries": [a.to_dict() for a in audits]}
    return json.dumps(document, indent=2, sort_keys=True)


def _summary(audit: LibraryAudit, shown: int = 5) -> list[str]:
    name = Path(audit.path).name
    parts: list[str] = []
    if audit.too_new_needs:
        newest = max(audit.too_new_needs, key=lambda need: _release(need.version) or ())
        listed = [f"{s.name}@{s.version}" for s in audit.too_new[:shown]]
        listed += ["..."] if len(audit.too_new) > shown else []
        count = len(audit.too_new)
        counted = f"{count} symbol{'' if count == 1 else 's'}"
        if not listed:  # e.g. GLIBC_ABI_DT_RELR, which no symbol uses
            listed, counted = [n.version for n in audit.too_new_needs], "version need only"
        parts.append(
            f"{name} needs {newest.version} > {audit.target_glibc}: {', '.join(listed)} ({counted})"
        )
    if audit.absolute_needed:
        parts.append(f"{name} has absolute DT_NEEDED {', '.join(audit.absolute_needed)}")
    if audit.unexpected_needed:
        parts.append(f"{name} needs unexpected {', '.join(audit.unexpected_needed)}")
    return parts


def raise_on_violation(audits: Iterable[LibraryAudit]) -> None:
    """Raise AuditError with a one-line summary when any library is not ok."""
    parts = [part for audit in audits if not audit.ok for part in _summary(audit)]
    if parts:
        raise AuditError("; ".join(parts))
