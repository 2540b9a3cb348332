"""The invoke collection: one flat namespace, so ``invoke build`` and ``invoke smoke`` work.

Each task is also bound here under its CLI name (``download``, ``build``, ``test_profile``
for ``test-profile``), which is how the top-level ``tasks.py`` gives them to a user's own
tasks: ``build(c, crate="../mycrate")`` runs build's body with the caller's context and
config, and returns what the task returns.
"""

from __future__ import annotations

import sys

# invoke turns Python's bytecode cache off unless given --write-pyc (program.py: "sys.dont_write_bytecode
# = not write-pyc"), so every module of tasks/ was compiled from source on every run: ~0.1 s of each
# command's start. compatbuild's modules keep the interpreter's own setting (PYTHONDONTWRITEBYTECODE, -B).
sys.dont_write_bytecode = bool(sys.flags.dont_write_bytecode)

from invoke.collection import Collection  # noqa: E402

from tasks.settings import DEFAULTS  # noqa: E402

ns = Collection()
ns.configure({"compatbuild": dict(DEFAULTS)})

from tasks.cli import builder, crates, inputs, startup  # noqa: E402
from tasks.cli.common import _under_invoke  # noqa: E402

if _under_invoke():  # invoke's tracebacks over a bad invoke.yaml as one line; a cheap exit (tasks/cli/startup.py)
    startup.exit_without_collecting()
    startup.install()

for module in (inputs, builder, crates):
    for t in module.TASKS:
        ns.add_task(t)

download = ns.tasks["download"]
verify = ns.tasks["verify"]
lock = ns.tasks["lock"]
rpms = ns.tasks["rpms"]
image = ns.tasks["image"]
llvm = ns.tasks["llvm"]
rust = ns.tasks["rust"]
images = ns.tasks["images"]
build = ns.tasks["build"]
audit = ns.tasks["audit"]
smoke = ns.tasks["smoke"]
sysroot = ns.tasks["sysroot"]
test_profile = ns.tasks["test-profile"]

__all__ = ["ns", "download", "verify", "lock", "rpms", "image", "llvm", "rust", "images", "build",
           "audit", "smoke", "sysroot", "test_profile"]
