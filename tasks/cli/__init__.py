"""The invoke collection: one flat namespace, so ``invoke build`` and ``invoke smoke`` work.

Each task is also bound here under its CLI name (``download``, ``build``, ``test_profile``
for ``test-profile``), which is how the top-level ``tasks.py`` gives them to a user's own
tasks: ``build(c, crate="../mycrate")`` runs build's body with the caller's context and
config, and returns what the task returns.
"""

from __future__ import annotations

from invoke.collection import Collection

from tasks.settings import DEFAULTS

ns = Collection()
ns.configure({"compatbuild": dict(DEFAULTS)})

from tasks.cli import builder, crates, inputs, startup  # noqa: E402
from tasks.cli.common import _under_invoke  # noqa: E402

if _under_invoke():  # invoke's tracebacks over a bad invoke.yaml, as one line (tasks/cli/startup.py)
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
