"""What the loader refuses that the audit can see in the file, and on which glibcs it bites.

- **An executable stack**: ``PT_GNU_STACK`` with ``PF_X``, or no ``PT_GNU_STACK`` at all
  (the loader then assumes one; an assembly file without ``.note.GNU-stack`` linked by GNU
  ld gives ``RWE``). From glibc 2.41 ``dlopen`` no longer makes the process stack
  executable for a library: it fails with ``cannot enable executable stack as shared object
  requires: Invalid argument`` (tried here on trixie's 2.41; bullseye's 2.31 loads it). An
  error.
- **Text relocations** (``DT_TEXTREL``, or ``DF_TEXTREL`` in ``DT_FLAGS``): every glibc
  loads them by making the code writable for a moment, but SELinux and hardened kernels
  refuse that (``execmod``), and the code's pages stop being shared. An error.
- **Static TLS** (``DF_STATIC_TLS``, or initial-exec TLS relocations such as
  ``R_X86_64_TPOFF64``): a ``dlopen``\\ ed library's initial-exec TLS must fit the small
  surplus glibc keeps in the static TLS block; when it does not, ``cannot allocate memory
  in static TLS block``, on every glibc (4096 bytes failed on 2.31 and 2.41 here). A warning,
  with the ``PT_TLS`` size.

rust-lld, lld and zig write a non-executable ``PT_GNU_STACK`` by default, and rustc's
output has no text relocations; compatbuild's own outputs have none of these (tested).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from elftools.elf.elffile import ELFFile


PF_X = 0x1
DF_TEXTREL = 0x4
DF_STATIC_TLS = 0x10
# initial-exec / local-exec TLS relocations a shared object may carry, by machine
TPOFF_RELOCS = {"EM_X86_64": {18, 23}, "EM_AARCH64": {1030}}  # R_X86_64_TPOFF64/32, R_AARCH64_TLS_TPREL64


@dataclass(frozen=True)
class Refusal:
    """One thing the loader may refuse: ``kind``, what was seen, where it bites, error or warning."""

    kind: str  # "executable stack", "text relocations", "static TLS"
    detail: str
    bites: str  # "glibc >= 2.41", "SELinux and hardened kernels, every glibc", ...
    error: bool

    def __str__(self) -> str:
        return f"{self.kind} ({self.detail}): {self.bites}"

    def to_dict(self) -> dict[str, object]:
        return {"kind": self.kind, "detail": self.detail, "bites": self.bites, "error": self.error}


def loader_refusals(elf: ELFFile) -> tuple[Refusal, ...]:
    """The refusals :mod:`this module <tasks.elf.refusals>` describes, seen in ``elf``."""
    from elftools.elf.dynamic import DynamicSection

    found: list[Refusal] = []
    stacks = [s for s in elf.iter_segments() if s["p_type"] == "PT_GNU_STACK"]
    if not stacks:
        found.append(Refusal("executable stack", "no PT_GNU_STACK: the loader assumes one",
                             "dlopen fails on glibc >= 2.41 (cannot enable executable stack)", True))
    elif any(s["p_flags"] & PF_X for s in stacks):
        found.append(Refusal("executable stack", "PT_GNU_STACK is RWE",
                             "dlopen fails on glibc >= 2.41 (cannot enable executable stack)", True))
    tags: dict[str, int] = {}
    for section in elf.iter_sections():
        if isinstance(section, DynamicSection):
            for tag in section.iter_tags():
                tags[str(tag.entry.d_tag)] = int(tag.entry.d_val) | tags.get(str(tag.entry.d_tag), 0)
    flags = tags.get("DT_FLAGS", 0)
    if "DT_TEXTREL" in tags or flags & DF_TEXTREL:
        found.append(Refusal("text relocations", "DT_TEXTREL",
                             "SELinux and hardened kernels refuse them (execmod), every glibc", True))
    tpoff = _tpoff_relocations(elf)
    if flags & DF_STATIC_TLS or tpoff:
        size = sum(int(s["p_memsz"]) for s in elf.iter_segments() if s["p_type"] == "PT_TLS")
        seen = ", ".join(filter(None, ["DF_STATIC_TLS" if flags & DF_STATIC_TLS else "",
                                       f"{tpoff} initial-exec TLS relocation{'s' if tpoff != 1 else ''}"
                                       if tpoff else ""]))
        found.append(Refusal("static TLS", f"{size} bytes; {seen}",
                             "dlopen fails (cannot allocate memory in static TLS block) when it exceeds "
                             "glibc's small surplus, every glibc", False))
    return tuple(found)


def _tpoff_relocations(elf: ELFFile) -> int:
    from elftools.elf.relocation import RelocationSection

    kinds = TPOFF_RELOCS.get(str(elf["e_machine"]), set())
    count = 0
    for section in elf.iter_sections():
        if isinstance(section, RelocationSection) and section.name.startswith((".rela.dyn", ".rel.dyn")):
            count += sum(1 for r in section.iter_relocations() if r["r_info_type"] in kinds)
    return count
