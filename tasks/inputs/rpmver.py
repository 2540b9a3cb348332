"""rpm's version comparison: EVRs, dependencies, and whether a provide meets a requirement.

:func:`rpmvercmp` is rpmio/rpmvercmp.c (with ``~`` and ``^``), :func:`evrcmp` compares
epoch:version-release as rpm does for dependencies (a missing release matches), and
:func:`satisfies` is rpmdsCompare's range overlap. Pure functions; no I/O.
"""

from __future__ import annotations

import re
from typing import NamedTuple

_SEGMENT = re.compile(r"[0-9]+|[A-Za-z]+|~|\^")
LT, GT, EQ = 2, 4, 8  # rpm's RPMSENSE_LESS, RPMSENSE_GREATER, RPMSENSE_EQUAL
FLAGS = {"LT": LT, "GT": GT, "EQ": EQ, "LE": LT | EQ, "GE": GT | EQ,
         "<": LT, ">": GT, "=": EQ, "<=": LT | EQ, ">=": GT | EQ}


class Evr(NamedTuple):
    """epoch:version-release; ``release`` is "" when a dependency leaves it out."""

    epoch: int
    version: str
    release: str = ""

    def __str__(self) -> str:
        e = f"{self.epoch}:" if self.epoch else ""
        return f"{e}{self.version}-{self.release}" if self.release else f"{e}{self.version}"


class Dep(NamedTuple):
    """A provide or requirement: a name, and optionally a comparison (rpm flag bits) and EVR."""

    name: str
    flags: int = 0
    evr: Evr | None = None

    def __str__(self) -> str:
        if self.evr is None:
            return self.name
        op = {v: k for k, v in FLAGS.items() if not k.isalpha()}[self.flags]
        return f"{self.name} {op} {self.evr}"


def rpmvercmp(a: str, b: str) -> int:
    """rpm's version comparison (rpmio/rpmvercmp.c, with ``~`` and ``^``): -1, 0 or 1.

    Runs of ASCII digits or letters are the segments, anything else separates them;
    ``~`` sorts before everything (even the end), ``^`` after the end but before the rest.
    """
    if a == b:
        return 0
    xs, ys = _SEGMENT.findall(a), _SEGMENT.findall(b)
    for k in range(max(len(xs), len(ys))):
        x, y = xs[k] if k < len(xs) else "", ys[k] if k < len(ys) else ""
        if "~" in (x, y):
            if x != y:
                return -1 if x == "~" else 1
            continue
        if "^" in (x, y):
            if x != y:
                return -1 if not x else 1 if not y or x != "^" else -1
            continue
        if not x or not y:
            return -1 if not x else 1
        if x.isdigit() != y.isdigit():  # a number is newer than letters
            return 1 if x.isdigit() else -1
        if x.isdigit() and int(x) != int(y):
            return 1 if int(x) > int(y) else -1
        if not x.isdigit() and x != y:
            return 1 if x > y else -1
    return 0


def evrcmp(a: Evr, b: Evr) -> int:
    """Compare EVRs as rpm does for dependencies: a release missing on either side matches."""
    if a.epoch != b.epoch:
        return 1 if a.epoch > b.epoch else -1
    c = rpmvercmp(a.version, b.version)
    if c or not a.release or not b.release:
        return c
    return rpmvercmp(a.release, b.release)


def parse_evr(text: str) -> Evr:
    """``[E:]V[-R]`` as rpm prints it."""
    epoch, _, rest = text.rpartition(":")
    version, _, release = rest.rpartition("-") if "-" in rest else (rest, "", "")
    return Evr(int(epoch) if epoch.isdigit() else 0, version, release)


def satisfies(provide: Dep, req: Dep) -> bool:
    """Whether ``provide`` meets ``req`` (rpmdsCompare): unversioned sides always overlap."""
    if provide.name != req.name:
        return False
    if provide.evr is None or req.evr is None or not provide.flags or not req.flags:
        return True
    sense = evrcmp(provide.evr, req.evr)
    if sense < 0:
        return bool(provide.flags & GT or req.flags & LT)
    if sense > 0:
        return bool(provide.flags & LT or req.flags & GT)
    return bool(provide.flags & req.flags & (EQ | LT | GT))
