"""Tasks for the trusted inputs: download, verify, lock."""

from __future__ import annotations

import dataclasses

from invoke.context import Context
from invoke.tasks import task

from tasks import memo
from tasks.cli.common import LOCK_HELP, TARGET_HELP, reports_errors, settings
from tasks.settings import parse_jobs


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
    run = memo.Run(s.cache, "download", {"lock": str(s.lock), "target": s.target, "only": only,
                                         "mirrors": dict(s.mirrors), "max_download": s.max_download})
    if (hit := memo.replay(run)) is not None:  # every input still in the store, as recorded
        memo.play(hit)
        return
    from tasks import pipeline, present

    fetched = pipeline.fetch_run(s, only=only or None)
    run.say(1)(present.fetched_text(fetched))
    if all(f.action == "cached" for f in fetched):  # a replay says "cached": only a run that was
        run.save(pipeline.inputs_watch(s), None)


@task(auto_shortflags=False, name="verify",
      help={"lock": LOCK_HELP, "only": "verify just this artifact", "target": TARGET_HELP})
@reports_errors
def verify_(c: Context, lock: str = "", only: str = "", target: str = "") -> None:
    """Check sha256, pinned-fingerprint signatures and signed checksum lists of the inputs."""
    s = settings(c, lock, target=target)
    run = memo.Run(s.cache, "verify", {"lock": str(s.lock), "target": s.target, "only": only})
    if (hit := memo.replay(run)) is not None:  # the same bytes, vouched for by the same stamps
        memo.play(hit)
        return
    from tasks import pipeline, present

    verified = pipeline.verify_run(s, only=only or None)
    run.say(1)(present.verified_text(verified))
    if all(v.cached for v in verified):  # a replay says "cached": only a run that was
        run.save(pipeline.inputs_watch(s), None)


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
    from tasks import pipeline

    pipeline.lock_run(settings(c, lock), rust=rust)

TASKS = [download_, verify_, lock_]
