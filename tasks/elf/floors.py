"""What a target system provides: the newest symbol version of each system library.

A library loads on a target only if every hard version need it records is one the
target's libraries define. glibc is one family (``GLIBC_2.17``); as auditwheel's
manylinux policies do, the audit also checks GCC's runtime libraries and zlib:

============  =================  ================================================
family        library            example
============  =================  ================================================
``GCC``       libgcc_s.so.1      ``GCC_4.8.0`` (``__cpu_indicator_init``)
``GLIBCXX``   libstdc++.so.6     ``GLIBCXX_3.4.21`` (C++11 ``std::string``)
``CXXABI``    libstdc++.so.6     ``CXXABI_1.3.9`` (sized ``operator delete``)
``ZLIB``      libz.so.1          ``ZLIB_1.2.9`` (``inflateValidate``)
============  =================  ================================================

:class:`TargetFloors` holds the newest version of each family a target provides (its
floor: what a library may need at most), and the non-numeric versions it also defines
(``CXXABI_TM_1``). :data:`KNOWN_TARGETS` has the targets compatbuild knows by name.

Floors are per arch: a target's ``arch`` (x86_64, aarch64) is the one its libraries must be
built for (the audit fails a library of another arch, naming both), and the families differ
by arch (libgcc_s's ``GCC_4.8.0`` is x86-only: centos7-aarch64 stops at ``GCC_4.7.0``).
glibc 2.17 is the first release with aarch64, so no aarch64 target can ask for less.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from tasks.arches import ARCHES
from tasks.errors import AuditError

# Version names that are not GLIBC_<release> but were introduced by a glibc release.
# GLIBC_ABI_DT_RELR: ld >= 2.38 records it for -z pack-relative-relocs; glibc 2.36 added it.
GLIBC_MARKERS: dict[str, tuple[int, ...]] = {"GLIBC_ABI_DT_RELR": (2, 36)}
_GLIBC_RE = re.compile(r"GLIBC_(\d+(?:\.\d+)+)")
_TARGET_RE = re.compile(r"(?:GLIBC_)?(\d+(?:\.\d+)+)")
_NUMERIC = re.compile(r"\d+(?:\.\d+)*")
FAMILIES = ("GCC", "GLIBCXX", "CXXABI", "ZLIB")  # the prefixes checked beyond GLIBC


@dataclass(frozen=True)
class TargetFloors:
    """The newest version a target provides in each family; ``None``: not checked.

    ``glibc`` is a release (``"2.17"``); the others are what follows the family prefix
    (``gcc="4.8.0"`` for ``GCC_4.8.0``). ``named`` lists the non-numeric versions the
    target also defines (``"CXXABI_TM_1"``); any other non-numeric one of a checked family
    is taken as too new. ``source`` says where the numbers come from.
    """

    name: str
    glibc: str
    gcc: str | None = None
    glibcxx: str | None = None
    cxxabi: str | None = None
    zlib: str | None = None
    named: tuple[str, ...] = ()
    source: str = ""
    arch: str | None = None  # the arch its libraries must be (x86_64, aarch64); None: not checked

    def maximum(self, family: str) -> str | None:
        """The newest version of ``family`` (``"GLIBCXX"``) provided, or None if not checked."""
        value: str | None = getattr(self, family.lower(), None) if family in FAMILIES else None
        return value

    def provides(self, version: str) -> bool | None:
        """Whether the target defines ``version`` (``"GLIBCXX_3.4.21"``); None: not checked."""
        family, _, rest = version.partition("_")
        top = self.maximum(family)
        if top is None or not rest:
            return None
        if not _NUMERIC.fullmatch(rest):
            return version in self.named
        return _numbers(rest) <= _numbers(top)


def _numbers(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


_AUDITWHEEL = "auditwheel's manylinux_2_17 (manylinux2014) x86_64 policy, GCC 4.8.5 and zlib 1.2.7"
KNOWN_TARGETS: dict[str, TargetFloors] = {
    "centos7": TargetFloors(
        "centos7", "2.17", gcc="4.8.0", glibcxx="3.4.19", cxxabi="1.3.7", zlib="1.2.5.2",
        named=("CXXABI_TM_1",), source=_AUDITWHEEL, arch="x86_64",
    ),
    "centos7-aarch64": TargetFloors(
        "centos7-aarch64", "2.17", gcc="4.7.0", glibcxx="3.4.19", cxxabi="1.3.7", zlib="1.2.5.2",
        named=("CXXABI_TM_1",), arch="aarch64",
        source="auditwheel's manylinux_2_17 (manylinux2014) aarch64 policy (pypa/auditwheel "
               "src/auditwheel/policy/manylinux-policy.json): GCC to 4.7.0 (4.8.0 is x86-only), "
               "GLIBCXX 3.4.19, CXXABI 1.3.7, zlib 1.2.5.2; glibc held at 2.17 (the policy also "
               "allows 2.18); not checked on a CentOS 7 aarch64 system",
    ),
    "fedora20": TargetFloors(
        "fedora20", "2.18", gcc="4.8.0", glibcxx="3.4.19", cxxabi="1.3.7", zlib="1.2.7.1",
        named=("CXXABI_TM_1",),
        source="GCC 4.8.x as in auditwheel's manylinux_2_17 policy; zlib 1.2.8's zlib.map "
               "(ZLIB_1.2.7.1); not checked on a Fedora 20 system", arch="x86_64",
    ),
    "bullseye": TargetFloors(
        "bullseye", "2.31", gcc="7.0.0", glibcxx="3.4.28", cxxabi="1.3.12", zlib="1.2.9",
        named=("CXXABI_FLOAT128", "CXXABI_TM_1"),
        source="read from Debian bullseye's libgcc-s1, libstdc++6 (GCC 10) and zlib1g 1.2.11", arch="x86_64",
    ),
    "bookworm": TargetFloors(
        "bookworm", "2.36", gcc="12.0.0", glibcxx="3.4.30", cxxabi="1.3.13", zlib="1.2.12",
        named=("CXXABI_FLOAT128", "CXXABI_TM_1"),
        source="read from Debian bookworm's libgcc-s1, libstdc++6 (GCC 12) and zlib1g 1.2.13", arch="x86_64",
    ),
}


def floors_for(name: str) -> TargetFloors:
    """The built-in floors of a known target; AuditError (one line) for any other name."""
    try:
        return KNOWN_TARGETS[name]
    except KeyError:
        known = ", ".join(sorted(KNOWN_TARGETS))
        raise AuditError(f"unknown target {name!r} for the audit; known: {known}") from None


def floors_from_glibc(target_glibc: str, arch: str | None = None) -> TargetFloors:
    """Floors that check glibc only (the audit before targets had names), and ``arch`` if given."""
    glibc = glibc_text(_for_arch(parse_glibc(target_glibc), arch))
    return TargetFloors(f"glibc {glibc}", glibc, arch=arch)


def resolve_floors(name: str, glibc: str, arch: str | None = None) -> TargetFloors:
    """A lockfile target's floors: the built-in ones when ``name`` is known, else glibc only
    (and the target's ``arch``, when given).

    A known name whose glibc or arch disagrees is an AuditError, not a guess; so is a glibc
    older than the arch's first (2.17 for aarch64).
    """
    known = KNOWN_TARGETS.get(name)
    if known is None:
        return TargetFloors(name, glibc_text(_for_arch(parse_glibc(glibc), arch)), arch=arch)
    if parse_glibc(glibc) != parse_glibc(known.glibc):
        raise AuditError(f"target {name} has glibc {known.glibc}, but {glibc} was asked for")
    if arch is not None and known.arch is not None and arch != known.arch:
        raise AuditError(f"target {name} is {known.arch}, but {arch} was asked for")
    return known


def _for_arch(release: tuple[int, ...], arch: str | None) -> tuple[int, ...]:
    """``release``, unless it is older than ``arch``'s first glibc (AuditError)."""
    first = ARCHES[arch].first_glibc if arch in ARCHES else ()
    if arch is not None and release < first:
        raise AuditError(f"glibc {glibc_text(release)} predates {arch}: its first glibc is {glibc_text(first)}")
    return release


def glibc_release(version: str) -> tuple[int, ...] | None:
    """``GLIBC_2.3.4`` -> (2, 3, 4); a known marker -> its release; anything else -> None."""
    match = _GLIBC_RE.fullmatch(version)
    if match:
        return _numbers(match.group(1))
    return GLIBC_MARKERS.get(version)


def glibc_newer(version: str, target: tuple[int, ...]) -> bool:
    """True when ``version`` is a glibc version (or marker) newer than release ``target``."""
    release = glibc_release(version)
    return release is not None and release > target


def parse_glibc(target_glibc: str) -> tuple[int, ...]:
    """``"2.17"`` or ``"GLIBC_2.17"`` -> (2, 17); AuditError for anything else."""
    match = _TARGET_RE.fullmatch(target_glibc.strip())
    if not match:
        raise AuditError(f"target glibc must look like 2.17, got {target_glibc!r}")
    return _numbers(match.group(1))


def glibc_text(release: tuple[int, ...]) -> str:
    return ".".join(str(part) for part in release)
