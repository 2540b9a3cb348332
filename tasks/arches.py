"""The architectures compatbuild knows: one table that every step reads its names from.

A lockfile target's ``arch`` (default x86_64) is a key of :data:`ARCHES`; from it come the
Rust triple a backend builds (``aarch64-unknown-linux-gnu``), the zig target that
cross-compiles the smoke harness (``aarch64-linux-gnu``), Debian's name for the arch
(``arm64``, in a ``.deb``'s file name), the multiarch folder and loader of a sysroot
(``lib/aarch64-linux-gnu``, ``ld-linux-aarch64.so.1``), the qemu-user program that runs it on
another machine (``qemu-aarch64-static``), and the ELF ``e_machine`` the audit expects
(``EM_AARCH64``, 183). :func:`of_file` reads a file's arch from its ELF header alone, so a
library of the wrong arch is refused in one line before anything loads it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Arch:
    """One architecture and its names in each tool's vocabulary."""

    name: str  # the lockfile's arch, `uname -m`: "aarch64"
    e_machine: int  # ELF e_machine: 183
    elf_name: str  # "EM_AARCH64", for messages
    rust_triple: str  # "aarch64-unknown-linux-gnu"
    zig_target: str  # "aarch64-linux-gnu" (zig cc -target, with .<glibc> appended)
    debian: str  # "arm64": a .deb's architecture
    multiarch: str  # "aarch64-linux-gnu": Debian's lib/<multiarch>
    loader: str  # "ld-linux-aarch64.so.1"
    qemu: str  # "qemu-aarch64-static" (Debian's qemu-user-static)
    first_glibc: tuple[int, int]  # the first glibc release for the arch (aarch64: 2.17)

    @property
    def lib_dirs(self) -> tuple[str, ...]:
        """Where a sysroot of this arch keeps its libraries: Fedora/CentOS lib64, Debian multiarch."""
        return ("lib64", "usr/lib64", f"lib/{self.multiarch}", f"usr/lib/{self.multiarch}", "lib", "usr/lib")


X86_64 = Arch("x86_64", 62, "EM_X86_64", "x86_64-unknown-linux-gnu", "x86_64-linux-gnu", "amd64",
              "x86_64-linux-gnu", "ld-linux-x86-64.so.2", "qemu-x86_64-static", (2, 0))
AARCH64 = Arch("aarch64", 183, "EM_AARCH64", "aarch64-unknown-linux-gnu", "aarch64-linux-gnu", "arm64",
               "aarch64-linux-gnu", "ld-linux-aarch64.so.1", "qemu-aarch64-static", (2, 17))
ARCHES: dict[str, Arch] = {a.name: a for a in (X86_64, AARCH64)}
_ELF_MAGIC = b"\x7fELF"


def get(name: str) -> Arch:
    """The arch called ``name`` (a lockfile's ``arch``, already validated against :data:`ARCHES`)."""
    return ARCHES[name]


def by_debian(name: str) -> Arch | None:
    """The arch Debian calls ``name`` (``arm64``), or None."""
    return next((a for a in ARCHES.values() if a.debian == name), None)


def host() -> Arch | None:
    """This machine's arch, or None when compatbuild does not know it."""
    import platform  # here: loading the arch table (every replayed audit) asks no machine

    return ARCHES.get(platform.machine())


def of_file(path: Path) -> Arch | str | None:
    """The arch of an ELF file from its header: an :class:`Arch`, a description of an unknown
    one (``"e_machine 40 (32-bit)"``), or None when ``path`` is not an ELF file (or unreadable)."""
    try:
        with Path(path).open("rb") as f:
            head = f.read(20)
    except OSError:
        return None
    if len(head) < 20 or head[:4] != _ELF_MAGIC:
        return None
    machine = int.from_bytes(head[18:20], "little" if head[5] == 1 else "big")
    bits = {1: "32-bit", 2: "64-bit"}.get(head[4], "unknown class")
    found = next((a for a in ARCHES.values() if a.e_machine == machine), None)
    if found is not None and head[4] == 2:
        return found
    return f"e_machine {machine} ({bits})"


def mismatch(path: Path, want: Arch) -> str:
    """"" when ``path`` is an ELF file of arch ``want`` (or no ELF at all: the caller's own check
    says so); else the one line that refuses it, naming both arches."""
    got = of_file(path)
    if got is None or got == want:
        return ""
    said = f"{got.name} ({got.elf_name})" if isinstance(got, Arch) else got
    return f"{Path(path).name} is an {said} library; this place is {want.name} ({want.elf_name})"
