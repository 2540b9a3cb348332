"""The weak-version fix-up: mark a version need weak when every reference to it is weak.

Every linker released today (GNU ld 2.35/2.40, LLD 9/11/22, zig's LLD) writes a version
need whose referencing symbols are all ``STB_WEAK`` as a *hard* need, so the old loader
refuses the library ("version `GLIBC_2.18' not found") although nothing in it requires the
symbol (Rust std's weak ``__cxa_thread_atexit_impl``). lld does the right thing from LLVM
23 on (llvm-project PR #176673): it sets ``VER_FLG_WEAK`` on such an ``Elf_Vernaux``, and
ld.so then skips the version check for it and binds the weak symbol to null.

:func:`fix_weak_needs` does that after the link. It edits nothing but those ``vna_flags``
bits, in place: no section, size or string table changes (unlike patchelf's DT_NEEDED
rewrite). The edit goes through :func:`tasks.atomic.staged`: copy the library beside
itself, patch the copy, re-read the copy and check that exactly the intended bits changed,
then replace the original. A second run finds nothing to do and writes nothing.

A need is made weak only when it has at least one referencing symbol and every one is an
undefined ``STB_WEAK`` dynamic symbol. A need with no referencing symbol (such as
``GLIBC_ABI_DT_RELR``, which asks the loader for a feature) is never touched. The needs are
walked as ld.so walks them, and what is not a regular file or not an x86_64 or aarch64 shared object is
refused before it is read (:mod:`tasks.elf.reading`).
"""

from __future__ import annotations

import io
import os
import shutil
import stat
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal

from tasks.atomic import staged
from tasks.elf.reading import check_entry_sizes, check_header, open_elf, regular_file, version_needs
from tasks.errors import FixupError

if TYPE_CHECKING:
    from elftools.elf.elffile import ELFFile
    from elftools.elf.gnuversions import GNUVerNeedSection

VER_FLG_WEAK = 0x2  # vna_flags bit (elf.h): the loader does not insist on this version
_VNA_FLAGS_AT = 4  # Elf_Vernaux: vna_hash (Elf_Word, 4 bytes), then vna_flags (Elf_Half)


@dataclass(frozen=True)
class NeedChange:
    """One version need the fix-up looked at: ``GLIBC_2.34`` from ``libc.so.6``.

    ``weak_symbols`` are its STB_WEAK references; ``strong_symbols`` the others (only a
    need the fix-up leaves hard has any).
    """

    library: str
    version: str
    weak_symbols: tuple[str, ...]
    strong_symbols: tuple[str, ...] = ()

    def __str__(self) -> str:
        return f"{self.version} ({self.library})"


@dataclass(frozen=True)
class FixupReport:
    """What :func:`fix_weak_needs` did to one library.

    ``weakened``: needs it marked weak now. ``already_weak``: needs whose flag was set
    before (by an earlier run, or a linker that does it). ``kept_hard``: needs with a weak
    reference that stay hard because some other reference is not weak.
    """

    path: str
    weakened: tuple[NeedChange, ...]
    already_weak: tuple[NeedChange, ...]
    kept_hard: tuple[NeedChange, ...]

    @property
    def changed(self) -> bool:
        """True when the fix-up rewrote the file: this run, or the build whose stamped copy it is."""
        return bool(self.weakened)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict, which :meth:`from_dict` reads back (a build stamp keeps its copies' reports)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FixupReport:
        """The report :meth:`to_dict` wrote; KeyError, TypeError or ValueError when it is not one."""
        def needs(key: str) -> tuple[NeedChange, ...]:
            return tuple(NeedChange(str(n["library"]), str(n["version"]), tuple(map(str, n["weak_symbols"])),
                                    tuple(map(str, n["strong_symbols"]))) for n in data[key])

        if not isinstance(data["path"], str):
            raise TypeError("path is not a string")
        return cls(data["path"], needs("weakened"), needs("already_weak"), needs("kept_hard"))

    def lines(self) -> list[str]:
        """What changed, for people: one line per need made weak, or one saying nothing was.

        ``kept_hard`` is left to the audit, which names those above the target.
        """
        out = [f"made weak {n} for {', '.join(n.weak_symbols)}" for n in self.weakened]
        if not self.weakened:
            out.append("nothing to change" + (
                f", already weak: {', '.join(map(str, self.already_weak))}" if self.already_weak else ""))
        return out


@dataclass(frozen=True)
class _Aux:
    library: str
    version: str
    flags: int
    index: int
    flags_offset: int  # file offset of this Elf_Vernaux's vna_flags


def _walk_needs(elf: ELFFile, section: GNUVerNeedSection) -> Iterator[_Aux]:
    """Every Elf_Vernaux with the file offset of its vna_flags, walked as ld.so walks them."""
    for aux in version_needs(elf, section):
        yield _Aux(aux.library, aux.version, aux.flags, aux.index, aux.offset + _VNA_FLAGS_AT)


def _references(elf: ELFFile) -> dict[int, list[tuple[str, bool]]]:
    """Version index -> (name, is an undefined STB_WEAK symbol) of each dynamic symbol using it."""
    from elftools.elf.gnuversions import GNUVerSymSection
    from elftools.elf.sections import SymbolTableSection

    versym = next((s for s in elf.iter_sections() if isinstance(s, GNUVerSymSection)), None)
    refs: dict[int, list[tuple[str, bool]]] = {}
    if versym is None or not isinstance(versym.symboltable, SymbolTableSection):
        return refs
    dynsym = versym.symboltable
    for i in range(1, min(dynsym.num_symbols(), versym.num_symbols())):
        ndx = versym.get_symbol(i)["ndx"]  # a str for VER_NDX_LOCAL/GLOBAL
        if isinstance(ndx, int):
            symbol = dynsym.get_symbol(i)
            weak = symbol["st_info"]["bind"] == "STB_WEAK" and symbol["st_shndx"] == "SHN_UNDEF"
            refs.setdefault(ndx & 0x7FFF, []).append((symbol.name, weak))  # bit 15: hidden
    return refs


def _read(path: Path, stream: IO[bytes], *, refs: bool = True
          ) -> tuple[list[_Aux], dict[int, list[tuple[str, bool]]], bool]:
    """The version needs of the library on ``stream``, and (with ``refs``) the symbols using each."""
    from elftools.common.exceptions import ELFError
    from elftools.elf.gnuversions import GNUVerNeedSection

    check_header(path, stream, FixupError, "the fix-up edits", "fix up")
    try:
        elf = open_elf(stream)
        check_entry_sizes(elf)
        sections = [s for s in elf.iter_sections() if isinstance(s, GNUVerNeedSection)]
        needs = [aux for section in sections for aux in _walk_needs(elf, section)]
        return needs, _references(elf) if refs else {}, elf.little_endian
    except (ELFError, ValueError, KeyError) as error:  # construct's errors are ValueErrors
        raise FixupError(f"{path}: cannot read its version needs: {error or type(error).__name__}") from error


def _plan(path: Path, needs: list[_Aux], refs: dict[int, list[tuple[str, bool]]]) -> tuple[
        list[_Aux], FixupReport]:
    to_patch: list[_Aux] = []
    weakened: list[NeedChange] = []
    already: list[NeedChange] = []
    kept: list[NeedChange] = []
    for aux in needs:
        users = refs.get(aux.index, [])
        weak = tuple(name for name, is_weak in users if is_weak)
        strong = tuple(name for name, is_weak in users if not is_weak)
        change = NeedChange(aux.library, aux.version, weak, strong)
        if aux.flags & VER_FLG_WEAK:
            already.append(change)
        elif weak and not strong:
            to_patch.append(aux)
            weakened.append(change)
        elif weak:
            kept.append(change)
    return to_patch, FixupReport(str(path), tuple(weakened), tuple(already), tuple(kept))


def _verify(path: Path, tmp: Path, original: bytes, patched: dict[int, bytes],
            to_patch: list[_Aux]) -> None:
    """Re-read the patched copy: only the planned bytes differ, and those needs are now weak."""
    data = tmp.read_bytes()
    if len(data) != len(original):
        raise FixupError(f"{path}: the patched copy changed size; left the library as it was")
    for at, want in patched.items():
        if data[at:at + len(want)] != want:
            raise FixupError(f"{path}: the patched copy lacks the edit at {at:#x}; left the library as it was")
    clean = bytearray(data)
    for at in patched:
        clean[at:at + 2] = original[at:at + 2]
    if bytes(clean) != original:
        raise FixupError(f"{path}: the patched copy differs beyond vna_flags; left the library as it was")
    with tmp.open("rb") as stream:
        needs, _, _ = _read(path, stream, refs=False)  # the needs only: the symbols did not change
    wanted = {(a.library, a.version) for a in to_patch}
    if not all(a.flags & VER_FLG_WEAK for a in needs if (a.library, a.version) in wanted):
        raise FixupError(f"{path}: re-reading the patched copy shows a need still hard; left it as it was")


def fix_weak_needs(path: Path) -> FixupReport:
    """Set VER_FLG_WEAK on each version need of ``path`` whose references are all weak.

    Edits the real file behind a symlink; keeps its mode. Returns what changed (nothing on
    a second run, which writes nothing). FixupError, one line, when ``path`` is not a
    readable x86_64 ELF shared object.
    """
    given = Path(path)
    real = given.resolve()
    try:
        regular_file(given, FixupError, "the fix-up edits")  # not a FIFO (blocks) nor /dev/zero (endless)
        original = real.read_bytes()  # one read: the plan and the check see the same bytes
        needs, refs, little = _read(given, io.BytesIO(original))
        to_patch, report = _plan(given, needs, refs)
        if not to_patch:
            return report
        order: Literal["little", "big"] = "little" if little else "big"
        patched = {a.flags_offset: (a.flags | VER_FLG_WEAK).to_bytes(2, order) for a in to_patch}
        with staged(real, mode=stat.S_IMODE(real.stat().st_mode)) as tmp:
            shutil.copyfile(real, tmp)
            with tmp.open("r+b") as out:
                for at, value in patched.items():
                    out.seek(at)
                    out.write(value)
                out.flush()
                os.fsync(out.fileno())
            _verify(given, tmp, original, patched, to_patch)
    except OSError as error:
        raise FixupError(f"{given}: {error.strerror or error}") from None
    return report
