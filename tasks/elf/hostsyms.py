"""The host's symbols: what a plugin leaves undefined for the program that loads it.

A Python extension module calls ``PyDict_Next``, a Lua module ``lua_pushinteger``: those
are undefined dynamic symbols of the library that none of its ``DT_NEEDED`` libraries
defines; the process that ``dlopen``\\ s it does. They are found two ways:

- against the target's own libraries (a sysroot, or ``/`` for this machine): each
  unversioned, non-weak undefined symbol that no library of the library's needed closure
  (``libc.so.6`` → ``ld-linux-x86-64.so.2``, ``libgcc_s.so.1``, ...) defines;
- without them, by the rule that an unversioned undefined symbol is no glibc or libgcc
  need (those carry a ``GLIBC_``/``GCC_`` version, and the audit judges them as before).

Weak undefined symbols (``__gmon_start__``) are never the host's: the loader leaves them 0.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING

from tasks.elf.reading import check_entry_sizes, open_elf, regular_file
from tasks.errors import AuditError

if TYPE_CHECKING:
    from elftools.elf.elffile import ELFFile

# Library directories of both layouts: Fedora (lib64) and Debian multiarch (x86_64, aarch64).
LIB_DIRS = ("lib64", "usr/lib64", "lib/x86_64-linux-gnu", "usr/lib/x86_64-linux-gnu", "lib", "usr/lib",
            "lib/aarch64-linux-gnu", "usr/lib/aarch64-linux-gnu")
SHOWN = 5  # names a one-line summary shows


@dataclass(frozen=True)
class HostSymbol:
    """One symbol the host must define: its name, ELF type (FUNC, OBJECT, TLS, NOTYPE) and size."""

    name: str
    kind: str = "NOTYPE"
    size: int = 0


def left_to_host(names: Sequence[str], shown: int = SHOWN) -> str:
    """``57 symbols left to the host: PyBytes_AsString, …`` (the first ``shown`` names)."""
    more = ", …" if len(names) > shown else ""
    plural = "" if len(names) == 1 else "s"
    return f"{len(names)} symbol{plural} left to the host: {', '.join(names[:shown])}{more}"


def unversioned_undefined(elf: ELFFile) -> list[HostSymbol]:
    """Each non-weak undefined ``.dynsym`` entry that names no symbol version, by name."""
    from elftools.elf.gnuversions import GNUVerSymSection
    from elftools.elf.sections import SymbolTableSection

    dynsym = elf.get_section_by_name(".dynsym")
    if not isinstance(dynsym, SymbolTableSection):
        return []
    versym = next((s for s in elf.iter_sections() if isinstance(s, GNUVerSymSection)), None)
    found: list[HostSymbol] = []
    for index in range(1, dynsym.num_symbols()):
        symbol = dynsym.get_symbol(index)
        if symbol["st_shndx"] != "SHN_UNDEF" or symbol["st_info"]["bind"] != "STB_GLOBAL" or not symbol.name:
            continue
        if versym is not None and index < versym.num_symbols():
            ndx = versym.get_symbol(index)["ndx"]  # a str (VER_NDX_LOCAL/GLOBAL) when unversioned
            if isinstance(ndx, int) and (ndx & 0x7FFF) > 1:
                continue
        kind = str(symbol["st_info"]["type"]).removeprefix("STT_")
        found.append(HostSymbol(symbol.name, kind, int(symbol["st_size"])))
    return sorted(found, key=lambda s: s.name)


def _needed(elf: ELFFile) -> list[str]:
    from elftools.elf.dynamic import DynamicSection

    return [str(tag.needed) for s in elf.iter_sections() if isinstance(s, DynamicSection)  # type: ignore[attr-defined]
            for tag in s.iter_tags() if tag.entry.d_tag == "DT_NEEDED"]


def _defined(elf: ELFFile) -> set[str]:
    from elftools.elf.sections import SymbolTableSection

    dynsym = elf.get_section_by_name(".dynsym")
    if not isinstance(dynsym, SymbolTableSection):
        return set()
    return {s.name for s in dynsym.iter_symbols() if s.name and s["st_shndx"] != "SHN_UNDEF"
            and s["st_info"]["bind"] in ("STB_GLOBAL", "STB_WEAK", "STB_GNU_UNIQUE")}


@dataclass
class TargetLibraries:
    """The shared libraries of a target's root (a sysroot, or ``/``): what each one defines.

    Read once per file with pyelftools; :meth:`defines` follows ``DT_NEEDED`` the way the
    loader's search does (libc.so.6 needs ld-linux-x86-64.so.2), inside ``root`` only.
    """

    root: Path
    _seen: dict[str, tuple[set[str], list[str]] | None] = field(default_factory=dict, repr=False)

    def find(self, name: str) -> Path | None:
        for d in LIB_DIRS:
            path = self.root / d / Path(name).name
            if path.is_file():
                return path
        return None

    def _read(self, name: str) -> tuple[set[str], list[str]] | None:
        from elftools.common.exceptions import ELFError

        if name not in self._seen:
            path = self.find(name)
            entry: tuple[set[str], list[str]] | None = None
            if path is not None:
                try:
                    with path.open("rb") as stream:
                        elf = open_elf(stream)
                        entry = (_defined(elf), _needed(elf))
                except (ELFError, OSError):  # a linker script (libc.so) or unreadable: defines nothing
                    entry = None
            self._seen[name] = entry
        return self._seen[name]

    def defines(self, needed: Iterable[str]) -> set[str]:
        """Every dynamic symbol the libraries ``needed`` and theirs, transitively, define."""
        names: set[str] = set()
        todo, done = list(needed), set()
        while todo:
            lib = todo.pop()
            if lib in done:
                continue
            done.add(lib)
            entry = self._read(lib)
            if entry is not None:
                names |= entry[0]
                todo.extend(entry[1])
        return names


def host_symbols_of(elf: ELFFile, needed: Sequence[str],
                    libraries: TargetLibraries | None = None) -> tuple[HostSymbol, ...]:
    """The symbols ``elf`` leaves to its host, checked against ``libraries`` when given."""
    candidates = unversioned_undefined(elf)
    if libraries is None or not candidates:
        return tuple(candidates)
    provided = libraries.defines(needed)
    return tuple(s for s in candidates if s.name not in provided)


def _open(path: Path, stream: IO[bytes]) -> ELFFile:
    from elftools.common.exceptions import ELFError

    try:
        elf = open_elf(stream)
        check_entry_sizes(elf)  # .gnu.version's sh_entsize divides: 0 was a ZeroDivisionError
        return elf
    except ELFError as error:
        raise AuditError(f"{path}: not a readable ELF shared object: {error}") from None


def host_symbols(path: Path, root: Path | None = None) -> tuple[HostSymbol, ...]:
    """The symbols the library at ``path`` leaves to its host, judged on ``root``'s libraries
    (a sysroot, ``/``), or by the unversioned rule when ``root`` is None."""
    libraries = TargetLibraries(root) if root is not None else None
    try:
        regular_file(Path(path), AuditError, "the host-symbol scan reads")
        with Path(path).open("rb") as stream:
            elf = _open(Path(path), stream)
            return host_symbols_of(elf, _needed(elf), libraries)
    except OSError as error:
        raise AuditError(f"{path}: not a readable ELF shared object: {error.strerror or error}") from None
