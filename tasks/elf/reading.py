"""What the audit, the fix-up and the host-symbol scan check before they trust an ELF file.

- :func:`open_elf`: the one way they parse a file, each section made once however often it is asked.
- :func:`regular_file`: a FIFO (opening it waits for a writer, forever), ``/dev/zero`` (reading
  it never ends), a directory or a socket is refused by a ``stat`` before anything opens the
  path for reading.
- :func:`check_header`: the ELF magic, then (class, machine) from :data:`MACHINES`, then
  ``ET_DYN``: a 32-bit library or a relocatable ``.o`` is refused, never passed. The table is
  the one place an architecture joins: x86_64 (EM_X86_64) and aarch64 (EM_AARCH64), named as
  in :mod:`tasks.arches`; whether the arch is the target's is the audit's question.
- :func:`check_entry_sizes`: the entry sizes pyelftools divides by (``.gnu.version``: 2,
  ``.dynsym``: ``sizeof(Elf64_Sym)``); 0 was a ZeroDivisionError.
- :func:`version_needs`: every ``Elf_Vernaux`` of ``.gnu.version_r``, walked as ld.so's
  ``_dl_check_map_versions`` (glibc ``elf/dl-version.c``) walks it: from the first
  ``Elf_Verneed``, ``vn_aux`` then ``vna_next`` until it is 0, ``vn_next`` until it is 0.
  ``sh_info`` and ``vn_cnt`` are not trusted (ld.so reads neither; pyelftools looped
  0xffffffff times on an ``sh_info`` of 0xffffffff, and saw one library's needs of two on an
  ``sh_info`` of 1). The section bounds the walk: each entry lies inside it, and it holds no
  more entries than its size allows.

A malformed table raises pyelftools' own ELFError, which each caller already words as its
one-line error naming the file; a refused file raises the caller's error class.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal

from tasks.arches import ARCHES
from tasks.errors import CompatError

if TYPE_CHECKING:
    from elftools.elf.elffile import ELFFile
    from elftools.elf.gnuversions import GNUVerNeedSection

_ELF_MAGIC = b"\x7fELF"
_ET_DYN = 3
_SECTIONS_ONCE: Any = None  # ELFFile's subclass, made at the first open (pyelftools loads only then)


@dataclass(frozen=True)
class Machine:
    """An architecture the audit knows: its ELF class and e_machine, and its names."""

    name: str  # x86_64
    elf_class: int  # 2: ELFCLASS64
    machine: int  # 62: EM_X86_64
    constants: str  # "ELFCLASS64, EM_X86_64", for messages


# (EI_CLASS, e_machine) -> Machine: the 64-bit arches of tasks.arches (their loaders and folders live there).
MACHINES: dict[tuple[int, int], Machine] = {
    (2, a.e_machine): Machine(a.name, 2, a.e_machine, f"ELFCLASS64, {a.elf_name}") for a in ARCHES.values()}

_KINDS = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISDIR, "a directory"), (stat.S_ISSOCK, "a socket"))


def _names() -> str:
    return " or ".join(m.name for m in MACHINES.values())


def open_elf(stream: IO[bytes]) -> ELFFile:
    """An ELFFile over ``stream`` that makes each section once.

    pyelftools parses a section's header and builds its object again on every ``get_section``,
    ``iter_sections`` and ``get_section_by_name``, and the audit's readers ask ~380 times for a
    file's ~40 sections: a third of the audit of a built library, paid after cargo ends.
    """
    global _SECTIONS_ONCE
    if _SECTIONS_ONCE is None:
        from elftools.common.exceptions import ELFError
        from elftools.elf.elffile import ELFFile

        class SectionsOnce(ELFFile):
            def get_section(self, n: int, type: Any = None) -> Any:
                made = self.__dict__.setdefault("_compatbuild_sections", {})
                section = made.get(n)
                if section is None:
                    section = made[n] = super().get_section(n)
                if type and section["sh_type"] not in type:
                    raise ELFError(f"Unexpected section type {section['sh_type']}, expected {type}")
                return section

        _SECTIONS_ONCE = SectionsOnce
    elf: ELFFile = _SECTIONS_ONCE(stream)
    return elf


def regular_file(path: Path, error: type[CompatError], who: str) -> None:
    """``error`` unless ``path`` (a symlink is followed) is a regular file; ``who``: "the audit reads".

    An OSError (no such file) is left to the caller's own open, which words it.
    """
    mode = os.stat(path).st_mode
    if not stat.S_ISREG(mode):
        kind = next((name for test, name in _KINDS if test(mode)), "not a file")
        raise error(f"{path}: not a regular file ({kind}); {who} ELF shared objects only")


def check_header(path: Path, stream: IO[bytes], error: type[CompatError], who: str, task: str) -> Machine:
    """The Machine of ``stream``'s ELF header; ``error`` unless it is a shared object of one in MACHINES.

    ``who`` ("the fix-up edits") and ``task`` ("fix up") word the refusal. Reads from 0 and
    leaves ``stream`` there.
    """
    stream.seek(0)
    head = stream.read(20)
    stream.seek(0)
    if head[:4] != _ELF_MAGIC or len(head) < 20:
        raise error(f"{path}: not an ELF file; {who} {_names()} shared objects only")
    order: Literal["little", "big"] = "little" if head[5:6] == b"\x01" else "big"
    kind = int.from_bytes(head[16:18], order)
    machine = int.from_bytes(head[18:20], order)
    known = MACHINES.get((head[4], machine))
    if known is None:
        bits = {1: "32-bit", 2: "64-bit"}.get(head[4], f"class {head[4]}")
        wanted = "; ".join(f"{m.name} ({m.constants})" for m in MACHINES.values())
        raise error(f"{path}: a {bits} ELF for machine {machine}; {who} {wanted} shared objects only")
    if kind != _ET_DYN:
        raise error(f"{path}: ELF type {kind} is not a shared object (ET_DYN); nothing to {task}")
    return known


def check_entry_sizes(elf: ELFFile) -> None:
    """ELFError unless ``.gnu.version`` and ``.dynsym`` have the entry size their type has."""
    from elftools.common.exceptions import ELFError

    structs: Any = elf.structs
    sizes = {"SHT_GNU_versym": structs.Elf_Versym.sizeof(), "SHT_DYNSYM": structs.Elf_Sym.sizeof()}
    for section in elf.iter_sections():
        want = sizes.get(str(section["sh_type"]))
        if want is not None and section["sh_entsize"] != want:
            raise ELFError(f"{section.name} has sh_entsize {section['sh_entsize']}, not {want}")


@dataclass(frozen=True)
class Vernaux:
    """One version need: ``GLIBC_2.34`` from ``libc.so.6``, its flags, index and file offset."""

    library: str
    version: str
    flags: int  # vna_flags (VER_FLG_WEAK: 0x2)
    index: int  # vna_other: the .gnu.version index symbols use
    offset: int  # file offset of this Elf_Vernaux


def version_needs(elf: ELFFile, section: GNUVerNeedSection) -> list[Vernaux]:
    """Every Elf_Vernaux of ``section``, in ld.so's order, the walk bounded by the section."""
    from elftools.common.exceptions import ELFError
    from elftools.common.utils import struct_parse

    structs: Any = elf.structs
    start, size = int(section["sh_offset"]), int(section["sh_size"])
    if size == 0:
        return []
    end = start + size
    need_size, aux_size = structs.Elf_Verneed.sizeof(), structs.Elf_Vernaux.sizeof()
    room = size // min(need_size, aux_size)  # more entries than fit means entries overlap in a loop

    def read(struct: Any, at: int, length: int, what: str) -> Any:
        nonlocal room
        if not start <= at <= end - length:
            raise ELFError(f"{section.name}: an {what} at {at:#x} lies outside the section "
                           f"({start:#x} to {end:#x})")
        room -= 1
        if room < 0:
            raise ELFError(f"{section.name}: its chain holds more entries than its {size} bytes can")
        return struct_parse(struct, elf.stream, stream_pos=at)

    strings = section.stringtable
    found: list[Vernaux] = []
    offset = start
    while True:
        verneed = read(structs.Elf_Verneed, offset, need_size, "Elf_Verneed")
        if verneed["vn_version"] != 1:  # ld.so: "unsupported version ... of Verneed record"
            raise ELFError(f"{section.name}: Elf_Verneed version {verneed['vn_version']} at {offset:#x}, not 1")
        library = str(strings.get_string(verneed["vn_file"]))
        at = offset + int(verneed["vn_aux"])
        while True:
            aux = read(structs.Elf_Vernaux, at, aux_size, "Elf_Vernaux")
            found.append(Vernaux(library, str(strings.get_string(aux["vna_name"])), int(aux["vna_flags"]),
                                 int(aux["vna_other"]), at))
            if not aux["vna_next"]:
                break
            at += int(aux["vna_next"])
        if not verneed["vn_next"]:
            break
        offset += int(verneed["vn_next"])
    return found
