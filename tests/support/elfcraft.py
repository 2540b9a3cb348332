"""Hostile ELF files for the audit and the fix-up, made from real ones.

Each starts as a library really linked here (gcc, or gcc -m32 with ld -m elf_i386 for a
32-bit one); one field is then patched in place with struct, at the offset pyelftools
reports for it, so the rest of the file stays what the linker wrote and ld.so can still be
asked whether it loads the result.
"""

from __future__ import annotations

import struct
import subprocess
from pathlib import Path

from elftools.elf.elffile import ELFFile

# Elf64_Shdr: field -> (offset, struct format)
SHDR64 = {"sh_name": (0, "I"), "sh_type": (4, "I"), "sh_flags": (8, "Q"), "sh_addr": (16, "Q"),
          "sh_offset": (24, "Q"), "sh_size": (32, "Q"), "sh_link": (40, "I"), "sh_info": (44, "I"),
          "sh_addralign": (48, "Q"), "sh_entsize": (56, "Q")}
# Elf64_Ehdr fields past e_ident
EHDR = {"e_type": (16, "H"), "e_machine": (18, "H")}


def _run(args: list[str | Path]) -> None:
    subprocess.run([str(a) for a in args], check=True, capture_output=True, timeout=120)  # noqa: S603


def shared_object(out: Path, source: str, *flags: str) -> Path:
    """``out``, a shared object gcc builds from C ``source`` (x86_64)."""
    src = out.with_suffix(".c")
    src.write_text(source)
    _run(["gcc", "-shared", "-fPIC", "-O1", "-o", out, src, *flags])
    return out


def object_file(out: Path, source: str) -> Path:
    """``out``, a relocatable object (ET_REL) gcc compiles from ``source``."""
    src = out.with_suffix(".c")
    src.write_text(source)
    _run(["gcc", "-c", "-fPIC", "-o", out, src])
    return out


def shared_object_32(out: Path, source: str) -> Path:
    """``out``, a real 32-bit (ELFCLASS32, EM_386) shared object: gcc -m32, then ld -m elf_i386."""
    src, obj = out.with_suffix(".c"), out.with_suffix(".o")
    src.write_text(source)
    _run(["gcc", "-m32", "-fPIC", "-c", "-o", obj, src])
    _run(["ld", "-m", "elf_i386", "-shared", "-o", out, obj])
    return out


def section_header_at(path: Path, name: str) -> int:
    """The file offset of section ``name``'s Elf64_Shdr."""
    with path.open("rb") as stream:
        elf = ELFFile(stream)
        for index, section in enumerate(elf.iter_sections()):
            if section.name == name:
                return int(elf["e_shoff"]) + index * int(elf["e_shentsize"])
    raise AssertionError(f"{path} has no section {name}")


def section_field(path: Path, name: str, field: str) -> int:
    at, fmt = SHDR64[field]
    start = section_header_at(path, name) + at
    return int(struct.unpack_from(f"<{fmt}", path.read_bytes(), start)[0])


def patch_section(path: Path, name: str, field: str, value: int) -> None:
    """Set one Elf64_Shdr field of section ``name`` (little-endian) in place."""
    at, fmt = SHDR64[field]
    data = bytearray(path.read_bytes())
    struct.pack_into(f"<{fmt}", data, section_header_at(path, name) + at, value)
    path.write_bytes(bytes(data))


def patch_header(path: Path, field: str, value: int) -> None:
    """Set one ELF header field (``e_type``, ``e_machine``) in place."""
    at, fmt = EHDR[field]
    data = bytearray(path.read_bytes())
    struct.pack_into(f"<{fmt}", data, at, value)
    path.write_bytes(bytes(data))
