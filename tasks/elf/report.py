"""The audit's words: a text report for people, JSON for CI, a one-line error for a failure."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from tasks.elf.floors import glibc_release, parse_glibc
from tasks.elf.hostsyms import left_to_host
from tasks.errors import AuditError

if TYPE_CHECKING:
    from tasks.elf.audit import LibraryAudit


def _fixup_lines(audit: LibraryAudit) -> list[str]:
    """What the weak-version fix-up did, and which too-new needs it had to leave hard."""
    if audit.fixup is None:
        return []
    lines = [f"  fix-up: {line}" for line in audit.fixup.lines()]
    target = parse_glibc(audit.target_glibc)
    for need in audit.fixup.kept_hard:
        release = glibc_release(need.version)
        runtime = any((r.library, r.version) == (need.library, need.version) for r in audit.too_new_runtime)
        if runtime or (release is not None and release > target):
            lines.append(f"  fix-up left {need} hard: {', '.join(need.strong_symbols)} not weak")
    return lines


def format_report(audits: Sequence[LibraryAudit], *, retain_note: bool = True) -> str:
    """Human-readable report: one ok/FAIL line per library, then what is wrong with it
    (``retain_note``: with the note on a linker that ignores SHF_GNU_RETAIN)."""
    lines: list[str] = []
    for audit in audits:
        status = "ok  " if audit.ok else "FAIL"
        glibc = audit.max_glibc or "none"
        linker = f", linked by {audit.linker}" if audit.linker else ""
        lines.append(f"{status} {audit.path} (max GLIBC {glibc}, target {audit.target}{linker})")
        if audit.wrong_arch:
            lines.append(f"  {_wrong_arch(audit)}")
        if audit.drops_retained and retain_note:
            lines.append(f"  note: {audit.linker} ignores the retain flag (SHF_GNU_RETAIN, honoured from LLD 13): "
                         "an unreferenced #[used] static may have been dropped by --gc-sections")
        if audit.host_symbols:
            lines.append(f"  {left_to_host(audit.host_symbols)}")
        lines.extend(f"  {'' if r.error else 'warning: '}{r}" for r in audit.loader_refusals)
        lines.extend(f"  {symbol}" for symbol in audit.too_new)
        used = {(s.library, s.version) for s in audit.symbols}
        lines.extend(
            f"  {need.version} ({need.library}), a version need no symbol uses"
            for need in audit.too_new_needs
            if (need.library, need.version) not in used
        )
        for runtime in audit.too_new_runtime:
            users = ", ".join(runtime.symbols) or "no symbol"
            lines.append(f"  {runtime}: {users}")
        if audit.too_new_weak:
            lines.append("  weak version needs (informational: ld.so skips the version check):")
            lines.extend(f"    {symbol}" for symbol in audit.too_new_weak)
        lines.extend(_fixup_lines(audit))
        lines.extend(f"  absolute DT_NEEDED: {name}" for name in audit.absolute_needed)
        lines.extend(f"  unexpected DT_NEEDED: {name}" for name in audit.unexpected_needed)
        if audit.rpath:
            lines.append(f"  RPATH: {':'.join(audit.rpath)}")
        if audit.runpath:
            lines.append(f"  RUNPATH: {':'.join(audit.runpath)}")
    return "\n".join(lines)


def report_json(audits: Sequence[LibraryAudit]) -> str:
    """The audits as JSON for CI: ``{"ok": bool, "error": the one-line violation or null,
    "libraries": [LibraryAudit.to_dict()]}``."""
    error = violation(audits)
    document = {"ok": all(a.ok for a in audits), "error": None if error is None else str(error),
                "libraries": [a.to_dict() for a in audits]}
    return json.dumps(document, indent=2, sort_keys=True)


def _counted(listed: list[str], total: int, shown: int) -> str:
    more = ", ..." if total > shown else ""
    return f"{', '.join(listed[:shown])}{more} ({total} symbol{'' if total == 1 else 's'})"


def _wrong_arch(audit: LibraryAudit) -> str:
    return (f"{Path(audit.path).name} is an {audit.arch} library; the target {audit.target} is "
            f"{audit.target_arch}: no loader there can map it")


def _summary(audit: LibraryAudit, shown: int = 5) -> list[str]:
    name = Path(audit.path).name
    parts: list[str] = [_wrong_arch(audit)] if audit.wrong_arch else []
    if audit.too_new_needs:
        newest = max(audit.too_new_needs, key=lambda need: glibc_release(need.version) or ())
        listed = [f"{s.name}@{s.version}" for s in audit.too_new]
        text = _counted(listed, len(listed), shown)
        if not listed:  # e.g. GLIBC_ABI_DT_RELR, which no symbol uses
            text = f"{', '.join(n.version for n in audit.too_new_needs)} (version need only)"
        parts.append(f"{name} needs {newest.version} > {audit.target_glibc}: {text}")
    for runtime in audit.too_new_runtime:
        where = audit.floors.name if audit.floors else audit.target
        users = _counted(list(runtime.symbols), len(runtime.symbols), 3) if runtime.symbols else "version need only"
        parts.append(f"{name} needs {runtime.version} ({runtime.library}) > {runtime.provided} "
                     f"({where}): {users}")
    if audit.fixup is not None and audit.too_new_needs:
        hard = {(n.library, n.version) for n in audit.too_new_needs}
        for need in audit.fixup.kept_hard:
            if (need.library, need.version) in hard:
                parts.append(f"{name}: the fix-up left {need.version} hard, "
                             f"{', '.join(need.strong_symbols)} not weak")
    if audit.absolute_needed:
        parts.append(f"{name} has absolute DT_NEEDED {', '.join(audit.absolute_needed)}")
    if audit.unexpected_needed:
        parts.append(f"{name} needs unexpected {', '.join(audit.unexpected_needed)}")
    parts.extend(f"{name} has {r}" for r in audit.loader_refusals if r.error)
    return parts


def violation(audits: Iterable[LibraryAudit]) -> AuditError | None:
    """The AuditError with a one-line summary of every library that is not ok; None when all are."""
    parts = [part for audit in audits if not audit.ok for part in _summary(audit)]
    return AuditError("; ".join(parts)) if parts else None


def raise_on_violation(audits: Iterable[LibraryAudit]) -> None:
    """Raise AuditError with a one-line summary when any library is not ok."""
    error = violation(audits)
    if error is not None:
        raise error
