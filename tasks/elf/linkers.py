"""Which linker wrote a library, read from its ``.comment``, and what that linker is known to drop.

LLD records itself (``Linker: LLD 11.0.1``); mold does too (``mold 2.4.0``). GNU ld writes
nothing there, so a library without such a line says "unknown". rustc (1.95 here) marks
``#[used]`` sections with the retain flag, SHF_GNU_RETAIN; linkers older than LLD 13 and
GNU ld 2.36 ignore it, so under ``--gc-sections`` an unreferenced ``#[used]`` static is
removed. Constructors (``.init_array``) and ``__start_``/``__stop_`` sections survive
either way (measured on LLD 9, 11, 22 and GNU ld 2.35, 2.40: see DESIGN.md).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from elftools.elf.elffile import ELFFile


_LLD = re.compile(r"^Linker: LLD (\d+)\.(\d+)(?:\.(\d+))?")
_MOLD = re.compile(r"^mold (\d+)\.(\d+)")
RETAIN_SINCE_LLD = 13


def comment_strings(elf: ELFFile) -> list[str]:
    """The NUL-separated strings of the ``.comment`` section (empty when there is none)."""
    section = elf.get_section_by_name(".comment")
    if section is None:
        return []
    return [s.decode(errors="replace") for s in section.data().split(b"\0") if s]


def linker_of(comments: list[str]) -> str | None:
    """``"LLD 11.0.1"``, ``"mold 2.4"``, or None when no linker recorded itself."""
    for text in comments:
        if m := _LLD.match(text):
            return "LLD " + ".".join(p for p in m.groups() if p is not None)
        if m := _MOLD.match(text):
            return f"mold {m.group(1)}.{m.group(2)}"
    return None


def drops_retained(linker: str | None) -> bool:
    """True for a linker known to ignore SHF_GNU_RETAIN (so it drops unreferenced ``#[used]``)."""
    if linker is None or not linker.startswith("LLD "):
        return False
    return int(linker.split()[1].split(".")[0]) < RETAIN_SINCE_LLD
