"""Tasks for the trusted inputs: download, verify, lock."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from invoke.context import Context
from invoke.tasks import task

from tasks.cli.common import LOCK_HELP, TARGET_HELP, lock_of, reports_errors, settings
from tasks.inputs import download, lockfile, pins, verify
from tasks.settings import parse_jobs
from tasks.store import Store


@task(
    auto_shortflags=False,
    name="download",
    help={
        "lock": LOCK_HELP,
        "target": TARGET_HELP + " (whose RPMs to fetch)",
        "only": "fetch just this artifact, key or rpm name",
        "jobs": "downloads at once, 1 or more (default: config compatbuild.jobs, i.e. 4)",
    }
)
@reports_errors
def download_(c: Context, lock: str = "", only: str = "", jobs: str = "", target: str = "") -> None:
    """Fetch every lockfile input into the content-addressed cache (resumable, cached)."""
    # jobs is text, checked by the same rule as the config: invoke's own int() of a bad
    # value is a traceback, and an int default could not tell `--jobs 0` from no flag.
    s = settings(c, lock, target=target)
    if jobs:
        s = dataclasses.replace(s, jobs=parse_jobs(jobs, "--jobs"))
    print(download.summary(download.fetch_all(lock_of(s), s, only=only or None)))


@task(auto_shortflags=False, name="verify",
      help={"lock": LOCK_HELP, "only": "verify just this artifact", "target": TARGET_HELP})
@reports_errors
def verify_(c: Context, lock: str = "", only: str = "", target: str = "") -> None:
    """Check sha256, pinned-fingerprint signatures and signed checksum lists of the inputs."""
    s = settings(c, lock, target=target)
    print(verify.summary(verify.verify_all(lock_of(s), Store(s.cache), only=only or None)))


@task(
    auto_shortflags=False,
    name="lock",
    help={
        "lock": LOCK_HELP,
        "rust": "re-pin the rust artifact to this version from its signed channel manifest",
    }
)
@reports_errors
def lock_(c: Context, lock: str = "", rust: str = "") -> None:
    """Refresh pins: record unknown key hashes on first verified fetch; re-pin Rust."""
    s = settings(c, lock)
    store = Store(s.cache)
    if rust:

        def fetch_url(url: str) -> Path:
            name = lockfile.url_basename(url)
            res = lockfile.Resource(f"channel file {name}", url, name, None, cap=lockfile.KEY_MAX)
            store.forget_url(url)  # a channel manifest changes: always fetch the current one
            return download.fetch(res, store, mirror=s.mirror).path

        pins.refresh_rust(s.lock, store, version=rust, fetch=fetch_url)
    lf = lockfile.load(s.lock)
    print(download.summary(download.fetch_all(lf, s)))
    print(verify.summary(verify.verify_all(lf, store)))
    if not pins.record_unpinned(s.lock, store, print):
        print(f"{s.lock.name}: no unpinned key hashes to record")
    pins.record_sizes(s.lock, store, print)


TASKS = [download_, verify_, lock_]
