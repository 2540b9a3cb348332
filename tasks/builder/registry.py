"""Stage images shared through an OCI registry, trusted only after checking them.

A stage's local tag ``compatbuild/<stage>:<digest>`` names its inputs, so a registry is a
shared cache keyed the same way: ``REGISTRY/REPO:<stage>-<digest>`` (one repository, so it
works on registries that allow no nested names). ``push_stages`` pushes each stage with its
labels; ``pull_stage`` uses a pulled image only when

- its ``org.compatbuild.*`` labels equal the stage's inputs (:attr:`Plan.labels`): an image
  built from other inputs under the right tag is refused (RegistryImageRefused, exit 40);
- its registry digest equals the one recorded in the local index the first time that tag
  was pulled (or pushed from here): a tag moved in the registry is refused (RegistryTagMoved,
  exit 41). The index is ``<cache>/registry/index.json``, written by the atomic primitive.

Credentials are docker-py's (``~/.docker/config.json``, credential helpers); none is ever
read, passed or printed here. A stage the registry does not have is built as before.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tasks.atomic import lock_for, write_atomic
from tasks.builder.docker_client import Docker
from tasks.builder.stages import Plan
from tasks.errors import RegistryError, RegistryImageRefused, RegistryTagMoved

Log = Callable[[str], None]
# host[:port]/path, lower-case path components (the distribution spec's grammar, simplified)
_NAME = re.compile(r"^(?:[A-Za-z0-9.-]+(?::[0-9]+)?/)?[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
                   r"(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$")


@dataclass(frozen=True)
class Registry:
    """A ``REGISTRY/REPO`` that holds stage images, and the local index of what was pulled."""

    repo: str
    index: Path  # <cache>/registry/index.json

    @classmethod
    def named(cls, repo: str, cache: Path) -> Registry:
        """Check ``repo`` (no tag, no digest, no credentials) and bind it to the cache's index."""
        repo = repo.strip().removesuffix("/")
        if "@" in repo or not _NAME.match(repo) or ":" in repo.rpartition("/")[2]:
            raise RegistryError(f"registry repository {repo!r} must be REGISTRY/REPO, "
                                "e.g. registry.corp:5000/team/compatbuild (no tag, digest or user)")
        return cls(repo, cache / "registry" / "index.json")

    def ref(self, p: Plan) -> str:
        """Where stage ``p`` lives in the registry: ``REPO:<stage>-<digest>``."""
        return f"{self.repo}:{p.stage.name}-{p.digest[:20]}"

    def known(self) -> dict[str, str]:
        """The index: registry ref -> the manifest digest first seen for it."""
        try:
            data = json.loads(self.index.read_text())
        except (OSError, ValueError):
            return {}
        return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}

    def remember(self, ref: str, digest: str, *, replace: bool = False) -> str:
        """Record ``ref`` -> ``digest`` unless the index has it (``replace``: always, after our
        own push); return the digest on record."""
        with lock_for(self.index):
            index = self.known()
            if replace or ref not in index:
                index[ref] = digest
                write_atomic(self.index, (json.dumps(index, indent=2, sort_keys=True) + "\n").encode())
            return index[ref]


def pull_stage(dk: Docker, reg: Registry, p: Plan, *, log: Log = print) -> bool:
    """Pull stage ``p`` from the registry and tag it locally; False when the registry lacks it.

    Raises RegistryImageRefused when its labels are not the stage's inputs, RegistryTagMoved
    when its digest is not the one on record; either way the pulled tag is removed again and
    the local stage tag is not made.
    """
    ref = reg.ref(p)
    image = dk.pull_ref(ref)
    if image is None:
        return False
    try:
        labels = image.labels or {}
        wrong = sorted(k for k, v in p.labels.items() if labels.get(k) != v)
        if wrong:
            raise RegistryImageRefused(
                f"{ref} is not stage {p.stage.name} of these inputs ({', '.join(wrong)} differ); "
                "refusing it (rebuild and push it from a trusted checkout, or drop --pull)")
        digest = dk.repo_digest(ref, reg.repo)
        if digest is None:
            raise RegistryError(f"pulled {ref} but the daemon recorded no registry digest for it")
        first = reg.remember(ref, digest)
        if first != digest:
            raise RegistryTagMoved(
                f"{ref} now names {digest[:19]}, first pulled as {first[:19]}: the tag moved in the "
                f"registry; refusing it (remove its entry from {reg.index} to trust the new image)")
        dk.tag(str(image.id), p.tag)
    finally:
        dk.remove_image(ref)  # the registry name was only the way in; the stage tag stays
    log(f"Pulled stage {p.stage.name} ({ref})")
    return True


def push_stages(dk: Docker, reg: Registry, plans: Sequence[Plan], *, log: Log = print) -> list[str]:
    """Push each stage (it must exist locally) as ``REPO:<stage>-<digest>``; return the refs."""
    pushed = []
    for i, p in enumerate(plans):
        image = dk.image(p.tag)
        if image is None and i < len(plans) - 1:
            continue  # a stage this daemon skipped by pulling a later one: it has nothing to give
        if image is None:
            raise RegistryError(f"stage {p.stage.name} ({p.tag}) is not on this daemon; build it first")
        ref = reg.ref(p)
        dk.tag(str(image.id), ref)
        try:
            digest = dk.push(ref)
        finally:
            dk.remove_image(ref)
        reg.remember(ref, digest, replace=True)  # what we pushed is what we trust
        log(f"Pushed stage {p.stage.name} as {ref} ({digest[:19]})")
        pushed.append(ref)
    return pushed
