"""compatbuild: build Rust cdylibs that load on old glibc (2.18 by default), and prove that they do.

This is your pipeline file. Every compatbuild task is bound below under its CLI name, so a
task of your own calls them as functions: ``build(c, crate="../mycrate")`` runs build's body
with your context and config (``invoke.yaml``, ``INVOKE_COMPATBUILD_*``) and returns what
it returns; a failure ends the run with compatbuild's one-line error and exit code.
``release`` at the bottom is a worked example; ``invoke --list`` shows it with the rest.

(How this file and the ``tasks/`` package share a name: invoke imports this file as the
module ``tasks``, ahead of the package. Pointing ``__path__`` at the folder makes this
module act as the package, so ``tasks.inputs.download`` and friends are the same code
whether invoke, pytest or mypy imports them.)
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

__path__ = [str(Path(__file__).resolve().parent / "tasks")]

from invoke.context import Context  # noqa: E402
from invoke.exceptions import Exit  # noqa: E402
from invoke.tasks import task  # noqa: E402

from tasks.cli import (  # noqa: E402
    audit,
    build,
    download,
    image,
    images,
    llvm,
    lock,
    ns,
    rpms,
    rust,
    smoke,
    sysroot,
    test_profile,
    verify,
)

__all__ = ["ns", "download", "verify", "lock", "rpms", "image", "llvm", "rust", "images", "build",
           "audit", "smoke", "sysroot", "test_profile", "release"]


# ----------------------------------------------------------------------------- your tasks
# A worked example: replace it, or add your own beside it and register each with
# ns.add_task(...) so that `invoke` sees it.


@task(
    iterable=["crate", "host"],
    auto_shortflags=False,
    help={
        "crate": "a crate to release (repeatable; default: the bundled example, examples/hello)",
        "host": "the real host program that loads the --crate in the same place, e.g. "
        "'python3 -c \"import {module}\"' (repeatable; see `invoke smoke --help`; '' for none)",
        "dist": "folder for the release: the .so files, their audit JSON and SHA256SUMS",
    },
)
def release(c: Context, crate: list[str] | None = None, host: list[str] | None = None, dist: str = "dist") -> None:
    """Build, audit and smoke-test each crate (--host: in its host program); collect them and their proof in dist/."""
    crates, hosts = crate or ["examples/hello"], host or []
    if len(hosts) > len(crates):
        raise Exit(f"release: {len(hosts)} --host for {len(crates)} --crate; give one per crate, in order", code=2)
    out = Path(dist).resolve()
    out.mkdir(parents=True, exist_ok=True)
    for path, program in zip(crates, hosts + [""] * (len(crates) - len(hosts)), strict=True):
        built = build(c, crate=path)  # the libraries, copied to compatbuild.out, and their audits
        # exits 11 unless each dlopen()s on the target's glibc (and its host program, if any, loads it)
        smoke(c, lib=[str(p) for p in built.libraries], host=program)
        for lib, report in zip(built.libraries, built.audits, strict=True):
            (out / lib.name).write_bytes(lib.read_bytes())
            (out / f"{lib.name}.audit.json").write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    sums = [f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.name}\n"
            for p in sorted(out.iterdir()) if p.is_file() and p.name != "SHA256SUMS"]
    (out / "SHA256SUMS").write_text("".join(sums))
    print(f"Released {len(sums)} files to {out}")


ns.add_task(release)
