"""The invoke collection: one flat namespace, so ``invoke build`` and ``invoke smoke`` work."""

from __future__ import annotations

from invoke.collection import Collection

from tasks.settings import DEFAULTS

ns = Collection()
ns.configure({"compatbuild": dict(DEFAULTS)})

from tasks.cli import crates, images, inputs  # noqa: E402

for module in (inputs, images, crates):
    for t in module.TASKS:
        ns.add_task(t)
