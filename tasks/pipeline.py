"""The pipeline steps composed: what each task runs before its own work, checked fast.

Idempotency lives here, not in invoke ``pre=``: each step checks its cache and returns at
once when there is nothing to do, so calling ``image`` after ``download`` costs nothing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable

from tasks.image import rpms, stages
from tasks.image.docker_client import Docker
from tasks.inputs import download, http, lockfile, verify
from tasks.inputs.lockfile import Lockfile
from tasks.settings import Settings
from tasks.store import Store

Log = Callable[[str], None]


def inputs_ready(lock: Lockfile, settings: Settings, names: Iterable[str], log: Log = print) -> None:
    """Download and verify the named artifacts (and the pinned RPMs when 'rpms' is named).

    One download pass and one verification pass over just those inputs; when all of them
    are cached and verified already, nothing is printed.
    """
    wanted = set(names)
    artifacts = tuple(a for a in lock.artifacts if a.name in wanted)
    key_names = {a.key for a in artifacts if a.key}
    subset = dataclasses.replace(
        lock,
        artifacts=artifacts,
        keys=tuple(k for k in lock.keys if k.name in key_names),
        rpms=lock.rpms if "rpms" in wanted else (),
    )
    if not (subset.artifacts or subset.rpms):
        return
    fetched = download.fetch_all(subset, settings, log=log)
    if any(f.action != "cached" for f in fetched):
        log(download.summary(fetched))
    if subset.artifacts:
        verified = verify.verify_all(subset, Store(settings.cache), log=log)
        if any(v.action != "cached" for v in verified):
            log(verify.summary(verified))


def image(dk: Docker, lock: Lockfile, settings: Settings, upto: str, *, log: Log = print,
          on_line: Log = print, nocache: bool = False) -> str:
    """Every stage up to ``upto``, inputs fetched and verified first; returns its tag."""
    needed: list[str] = []
    for s in stages.chain(upto, lock.linker):
        needed.extend(s.artifacts)
        if s.rpms:
            needed.append("rpms")
    stages.ensure_base(dk, lock, log)  # fail fast: a missing base needs no downloads
    if "rpms" in needed and lock.target.packages and not lock.rpms:
        log(f"{lock.path.name} pins no RPMs yet: resolving {lock.target.name}'s packages")
        lock = refresh_rpm_pins(dk, lock, settings, log)
    inputs_ready(lock, settings, needed, log)
    plans = stages.ensure_stages(dk, lock, Store(settings.cache), upto, log=log, on_line=on_line,
                                 nocache=nocache)
    return plans[-1].tag


def refresh_rpm_pins(dk: Docker, lock: Lockfile, settings: Settings, log: Log = print) -> Lockfile:
    """Resolve ``[target] packages`` from the archive and rewrite ``[[rpm]]``; the new lockfile."""
    base = stages.ensure_base(dk, lock, log)
    installed = rpms.installed_in_base(dk, base)
    packages = lock.target.packages or rpms.PACKAGES
    rpms.refresh(lock.path, packages=tuple(packages) + rpms.SYSROOT_PACKAGES, installed=installed,
                 fetch_bytes=lambda url: http.get_bytes(settings.mirror(url)), log=log)
    return lockfile.load(lock.path)

