"""Tasks for the builder image (tasks/builder): rpms, image, llvm, rust, images, test-profile."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any

from invoke.context import Context
from invoke.tasks import Task, task

from tasks.cli.common import LINKER_HELP, LOCK_HELP, TARGET_HELP, json_document_on_failure, reports_errors, settings


@task(
    auto_shortflags=False,
    name="rpms",
    help={
        "lock": LOCK_HELP,
        "refresh": "re-resolve the target's pin set from its repos (needs the internet "
        "and Docker) and rewrite its [[rpm]] entries in the lockfile",
        "target": TARGET_HELP,
    },
)
@reports_errors
def rpms_(c: Context, lock: str = "", refresh: bool = False, target: str = "") -> None:
    """Fetch and verify the target's pinned RPMs; --refresh re-pins them from its repositories."""
    from tasks import pipeline

    s = settings(c, lock, target=target)
    if not pipeline.rpms_run(s, refresh=refresh).rpms:
        print(f"{s.lock.name}: no [[rpm]] pins; run `invoke rpms --refresh` where the archive is reachable")


def _image_task(upto: str, doc: str) -> Task[Any]:
    def body(c: Context, lock: str = "", no_cache: bool = False, target: str = "", linker: str = "",
             pull: str = "", push: str = "") -> str:
        from tasks import pipeline

        s = settings(c, lock, target=target, linker=linker)
        if pull:
            s = dataclasses.replace(s, registry=pull)
        tag = pipeline.image_run(s, upto, nocache=no_cache, push=push)
        print(tag)
        return tag

    body.__doc__ = doc
    name = "image" if upto == "builder" else upto
    flags = {"lock": LOCK_HELP, "target": TARGET_HELP, "linker": LINKER_HELP,
             "no_cache": "build missing stages without Docker's layer cache (existing tags are still used)",
             "pull": "REGISTRY/REPO to pull each missing stage from before building it, after checking its "
             "labels and digest (default: config compatbuild.registry)",
             "push": "REGISTRY/REPO to push every stage to, as REPO:<stage>-<input digest>, labels included "
             "(credentials: ~/.docker/config.json and its helpers)"}
    return task(name=name, help=flags, auto_shortflags=False)(reports_errors(body))  # type: ignore[no-any-return]


image_ = _image_task(
    "builder", "Build every image stage up to the builder (each cached by its inputs); print its tag."
)
llvm_ = _image_task("llvm", "Build the image stages up to LLVM/clang/lld 5.0.2; print the tag.")
rust_ = _image_task("rust", "Build the image stages up to the pinned Rust toolchain; print the tag.")


@task(
    auto_shortflags=False,
    name="images",
    help={
        "lock": LOCK_HELP,
        "prune": "remove compatbuild images that the current lockfile no longer names (any target or linker)",
        "json": "print the images as JSON, for CI",
    },
)
@reports_errors
def images_(c: Context, lock: str = "", prune: bool = False, json: bool = False) -> None:
    """List this project's images (stage, tag, id); --prune removes stale ones."""
    from tasks import pipeline, present

    with json_document_on_failure(json, "prune" if prune else "images"):
        s = settings(c, lock)
        if prune:
            removed = pipeline.prune_images(s, log=_stderr if json else print)
        else:
            rows = pipeline.project_images(s)
    if prune:
        print(present.pruned_json(removed) if json else f"Removed {len(removed)} image tag(s)")
        return
    if json:
        print(present.images_json(rows))
        return
    for stage_name, tag, image_id in rows:
        print(f"{stage_name:8} {tag:45} {image_id[7:19]}")


@task(
    auto_shortflags=False,
    name="test-profile",
    help={"root": "folder for the profile's inputs and lockfile (default: <cache>/test-profile)"},
)
@reports_errors
def test_profile_(c: Context, root: str = "") -> None:
    """Prepare the offline test profile: a local bullseye base image and stand-in inputs."""
    from tasks import pipeline

    lock_path = pipeline.test_profile_run(settings(c), Path(root).resolve() if root else None)
    print(f"Test profile ready: use --lock {lock_path}")


def _stderr(line: str) -> None:
    print(line, file=sys.stderr)


TASKS = [rpms_, image_, llvm_, rust_, images_, test_profile_]
