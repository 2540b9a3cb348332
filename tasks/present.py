"""What the tasks print: every text and JSON form of a result, in one place.

The tasks (tasks/cli) import the pipeline for work and this module for words; neither
decides anything for the other.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from tasks.backends.outputs import BuildResult as BuildResult
from tasks.dlopen.matrix import Cell as Cell
from tasks.dlopen.matrix import table
from tasks.dlopen.smoke import SmokeResult as SmokeResult
from tasks.elf.audit import LibraryAudit as LibraryAudit  # the result types, for the tasks' signatures
from tasks.elf.report import format_report, report_json
from tasks.inputs.download import Fetched
from tasks.inputs.download import summary as download_summary
from tasks.inputs.lockfile import Lockfile
from tasks.inputs.verify import Verified
from tasks.inputs.verify import summary as verify_summary

__all__ = ["audit_text", "audit_json", "build_json", "fetched_text", "verified_text", "smoke_json",
           "matrix_text", "matrix_json"]


def audit_text(audits: Sequence[LibraryAudit]) -> str:
    """The audit report a person reads: one block per library."""
    return format_report(audits)


def audit_json(audits: Sequence[LibraryAudit]) -> str:
    """The audit report for CI."""
    return report_json(audits)


def build_json(result: BuildResult, lock: Lockfile, backend: str) -> str:
    """`invoke build --json`: the libraries, the image or zig, the target, the linker and the audit."""
    return json.dumps({"libraries": [str(p) for p in result.libraries], "image": result.image_tag,
                       "target": _target(lock), "linker": lock.linker, "backend": backend,
                       "audit": [a.to_dict() for a in result.audits]}, indent=2)


def fetched_text(fetched: Sequence[Fetched]) -> str:
    return download_summary(fetched)


def verified_text(verified: Sequence[Verified]) -> str:
    return verify_summary(verified)


def smoke_json(lock: Lockfile, results: Sequence[SmokeResult], error: str | None) -> str:
    """`invoke smoke --json`: the target, ok, the one-line error and each library's result."""
    rows = [{"library": str(r.library), "where": r.where, "ok": r.ok, "status": r.status, "error": r.error}
            for r in results]
    return json.dumps({"target": _target(lock), "ok": error is None, "error": error, "results": rows}, indent=2)


def matrix_text(cells: Sequence[Cell]) -> str:
    return table(cells)


def matrix_json(lock: Lockfile, cells: Sequence[Cell]) -> str:
    return json.dumps({"target": _target(lock), "cells": [c.to_dict() for c in cells]}, indent=2)


def _target(lock: Lockfile) -> dict[str, str]:
    return {"name": lock.target.name, "glibc": lock.target.glibc}
