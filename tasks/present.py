"""What the tasks print: every text and JSON form of a result, in one place.

The tasks (tasks/cli) import the pipeline for work and this module for words; neither
decides anything for the other. Every JSON document is an exit of its own: each string in
it passes :func:`tasks.errors.redact` (:func:`_document`), as every error message does.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from tasks.backends.outputs import BuildResult as BuildResult
from tasks.dlopen.matrix import Cell as Cell
from tasks.dlopen.matrix import table
from tasks.dlopen.smoke import SmokeResult as SmokeResult
from tasks.elf.audit import LibraryAudit as LibraryAudit  # the result types, for the tasks' signatures
from tasks.elf.report import format_report, report_json, violation
from tasks.errors import redact
from tasks.inputs.download import Fetched
from tasks.inputs.download import summary as download_summary
from tasks.inputs.lockfile import Lockfile
from tasks.inputs.verify import Verified
from tasks.inputs.verify import summary as verify_summary

__all__ = ["audit_text", "audit_json", "build_json", "fetched_text", "verified_text", "smoke_json", "smoke_text",
           "matrix_text", "matrix_json", "images_json", "pruned_json", "failure_json"]


def audit_text(audits: Sequence[LibraryAudit], *, retain_note: bool = True) -> str:
    """The audit report a person reads: one block per library (``retain_note``: say that the
    linker ignores SHF_GNU_RETAIN, true of the linker rather than of the library)."""
    return format_report(audits, retain_note=retain_note)


def audit_json(audits: Sequence[LibraryAudit]) -> str:
    """The audit report for CI."""
    return report_json(audits)


def build_json(result: BuildResult, lock: Lockfile, backend: str) -> str:
    """`invoke build --json`: ok, the audit's one-line violation (or null), the libraries, the image
    or zig, the target, the linker and the audit."""
    error = violation(result.audits)
    return _document({"ok": error is None, "error": None if error is None else str(error),
                      "libraries": [str(p) for p in result.libraries], "image": result.image_tag,
                      "target": _target(lock), "linker": lock.linker, "backend": backend,
                      "audit": [a.to_dict() for a in result.audits]})


def fetched_text(fetched: Sequence[Fetched]) -> str:
    return download_summary(fetched)


def verified_text(verified: Sequence[Verified]) -> str:
    return verify_summary(verified)


def smoke_json(lock: Lockfile, results: Sequence[SmokeResult], error: str | None) -> str:
    """`invoke smoke --json`: the target, ok, the one-line error and each library's result."""
    rows = [{"library": str(r.library), "where": r.where, "ok": r.ok, "status": r.status, "error": r.error,
             "text": r.text, "host": r.host} for r in results]
    return _document({"target": _target(lock), "ok": error is None, "error": error, "results": rows})


def smoke_text(results: Sequence[SmokeResult]) -> str:
    """What the host mode provided, one line per library that loaded with it ("" when none did):
    ``libmymod.so on bullseye (...): loaded (57 symbols left to the host: PyBytes_AsString, …)``."""
    return "\n".join(f"{r.library.name} on {r.where}: {r.text}" for r in results if r.ok and r.host)


def matrix_text(cells: Sequence[Cell]) -> str:
    return table(cells)


def matrix_json(lock: Lockfile, cells: Sequence[Cell], error: str | None = None) -> str:
    """`invoke smoke --matrix --json`: the target, ok, the one-line error (or null) and every cell."""
    return _document({"target": _target(lock), "ok": error is None, "error": error,
                      "cells": [c.to_dict() for c in cells]})


def images_json(rows: Sequence[tuple[str, str, str]]) -> str:
    """`invoke images --json`: each (stage, tag, id) of this project's images."""
    return _document({"ok": True, "error": None,
                      "images": [{"stage": st, "tag": t, "id": i} for st, t, i in rows]})


def pruned_json(removed: Sequence[str]) -> str:
    """`invoke images --prune --json`: the tags removed."""
    return _document({"ok": True, "error": None, "removed": list(removed)})


# What each document holds when its run ended before it had a result: lists empty, the rest null.
_EMPTY: dict[str, dict[str, Any]] = {
    "audit": {"libraries": []},
    "build": {"libraries": [], "image": None, "target": None, "linker": None, "backend": None, "audit": []},
    "smoke": {"target": None, "results": []},
    "matrix": {"target": None, "cells": []},
    "images": {"images": []},
    "prune": {"removed": []},
}


def failure_json(document: str, error: str) -> str:
    """The ``document`` (a key of ``_EMPTY``: audit, build, smoke, ...) of a `--json` run that
    ended in ``error`` before it had a result: ``"ok": false``, the one-line error, nothing else."""
    return _document({"ok": False, "error": error, **_EMPTY[document]})


def _document(data: Any) -> str:
    """``data`` as indented JSON, every string in it (keys too) redacted."""
    def clean(value: Any) -> Any:
        if isinstance(value, str):
            return redact(value)
        if isinstance(value, dict):
            return {clean(k): clean(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [clean(v) for v in value]
        return value

    return json.dumps(clean(data), indent=2)


def _target(lock: Lockfile) -> dict[str, str]:
    return {"name": lock.target.name, "glibc": lock.target.glibc}
