"""The builder image, one cached stage per component, each tagged by a digest of its inputs.

    linker llvm:      base -> rpms -> make -> cmake -> llvm -> rust -> builder
    linker rust-lld:  base -> rpms -> rust -> builder (docker/builder-rust-lld)
                                \\-> smoke (the dlopen harness, compiled by the target's gcc)
    an aarch64 target (cross_from = "centos7"):
                      <centos7's chain> -> builder -> cross (docker/cross-aarch64: the aarch64
                      rust-std and the target's RPMs as a sysroot; tasks/backends/cross.py)

A stage's tag is ``compatbuild/<stage>:<digest>`` where the digest covers the stage's
Dockerfile folder, the sha256 of every artifact it copies in, and the parent's tag. So the
tag names the inputs: when it exists, the stage is done and the daemon's builder is never
contacted; changing the Rust pin changes only the rust and builder tags, never llvm's.
Images are labelled with their inputs so ``invoke images`` can list and prune them.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tasks.builder.docker_client import LABEL_PREFIX, Docker
from tasks.errors import OFFLINE_HINT, DockerError, LockfileError
from tasks.inputs.lockfile import Lockfile
from tasks.settings import PROJECT_ROOT
from tasks.store import Store, digest_of

DOCKER_DIR = PROJECT_ROOT / "docker"
REPO = "compatbuild"
Log = Callable[[str], None]


@dataclass(frozen=True)
class Stage:
    """One image stage: its parent stage, its docker/ folder and the artifacts it copies in."""

    name: str
    parent: str
    artifacts: tuple[str, ...] = ()
    rpms: bool = False
    folder: str = ""  # docker/<folder>; the stage's name when empty

    @property
    def dockerfile_dir(self) -> Path:
        return DOCKER_DIR / (self.folder or self.name)


_COMMON: tuple[Stage, ...] = (
    Stage("rpms", "base", rpms=True),
    Stage("make", "rpms", ("make",)),
    Stage("cmake", "make", ("cmake",)),
    Stage("llvm", "cmake", ("llvm", "clang", "lld")),
    Stage("smoke", "rpms"),
)
# The linker strategy decides where rust sits and how the builder links (lockfile [build]
# linker, or --linker). make/cmake/llvm stay buildable under both (`invoke llvm`).
STAGES_BY_LINKER: dict[str, tuple[Stage, ...]] = {
    "llvm": (*_COMMON, Stage("rust", "llvm", ("rust",)), Stage("builder", "rust")),
    "rust-lld": (*_COMMON, Stage("rust", "rpms", ("rust",)),
                 Stage("builder", "rust", folder="builder-rust-lld")),
}
STAGES = STAGES_BY_LINKER["llvm"]
# An aarch64 target's builder: its cross_from target's builder plus the cross-link inputs.
CROSS = Stage("cross", "builder", ("rust-std-aarch64",), rpms=True, folder="cross-aarch64")
STAGE_NAMES = ("rpms", "make", "cmake", "llvm", "rust", "builder", "smoke")


@dataclass(frozen=True)
class Input:
    """A file in a stage's build context: its path there and the sha256 of its bytes."""

    arcname: str
    sha256: str
    source: Path


@dataclass(frozen=True)
class Plan:
    """A stage resolved against a lockfile: what goes in, and the tag that names it."""

    stage: Stage
    parent_tag: str
    inputs: tuple[Input, ...]

    @property
    def digest(self) -> str:
        material: dict[str, object] = {
            "stage": self.stage.name,
            "parent": self.parent_tag,
            "inputs": sorted((i.arcname, i.sha256) for i in self.inputs),
        }
        if self.stage.folder:
            material["folder"] = self.stage.folder
        return digest_of(material)

    @property
    def tag(self) -> str:
        return f"{REPO}/{self.stage.name}:{self.digest[:20]}"

    @property
    def labels(self) -> dict[str, str]:
        return {
            f"{LABEL_PREFIX}.project": REPO,
            f"{LABEL_PREFIX}.stage": self.stage.name,
            f"{LABEL_PREFIX}.parent": self.parent_tag,
            f"{LABEL_PREFIX}.inputs": json.dumps({i.arcname: i.sha256 for i in self.inputs}),
        }


def stage(name: str, linker: str = "llvm") -> Stage:
    """The stage called ``name`` under a linker strategy; LockfileError for an unknown one."""
    if linker not in STAGES_BY_LINKER:
        raise LockfileError(f"unknown linker '{linker}' (linkers: {', '.join(STAGES_BY_LINKER)})")
    for s in STAGES_BY_LINKER[linker]:
        if s.name == name:
            return s
    raise LockfileError(f"no image stage '{name}' (stages: {', '.join(STAGE_NAMES)})")


def chain(upto: str, linker: str = "llvm") -> list[Stage]:
    """The stages from the first one to ``upto`` under ``linker``, parents first."""
    out: list[Stage] = []
    s = stage(upto, linker)
    while True:
        out.append(s)
        if s.parent == "base":
            return out[::-1]
        s = stage(s.parent, linker)


def base_tag(lock: Lockfile) -> str:
    pin = lock.base.id or lock.base.digest or ""
    return f"{REPO}/base:{hashlib.sha256(pin.encode()).hexdigest()[:20]}"


def host_lock(lock: Lockfile) -> Lockfile:
    """The lockfile of the target whose x86_64 builder image ``lock``'s cross target builds in."""
    from tasks.inputs import lockfile  # the loader, for the other target of the same file

    return lockfile.load(lock.path, lock.target.cross_from, linker=lock.linker)


def plan(lock: Lockfile, store: Store, upto: str) -> list[Plan]:
    """Resolve each stage up to ``upto`` to its inputs and tag, without touching Docker.

    A cross target (``cross_from``) has one chain: its build host's up to the builder, then
    :data:`CROSS` with its own RPMs; no other stage of it can run on an x86_64 daemon.
    """
    if lock.target.cross_from:
        if upto != "builder":
            raise DockerError(f"{lock.target.name} is an {lock.target.arch} target: the docker backend makes only "
                              f"its cross-linking builder, not a {upto} stage (that would be an "
                              f"{lock.target.arch} image under qemu binfmt); smoke it with `invoke smoke --matrix`")
        chain_plans = plan(host_lock(lock), store, "builder")
        inputs = _folder_inputs(CROSS.dockerfile_dir)
        for name in CROSS.artifacts:
            a = lock.artifact(name)
            inputs.append(Input(f"inputs/{name}/{a.filename}", a.sha256, store.path(a.sha256)))
        inputs.extend(Input(f"rpms/{r.filename}", r.sha256, store.path(r.sha256)) for r in lock.rpms)
        return [*chain_plans, Plan(CROSS, chain_plans[-1].tag, tuple(inputs))]
    plans: list[Plan] = []
    parent = base_tag(lock)
    for s in chain(upto, lock.linker):
        inputs = _folder_inputs(s.dockerfile_dir)
        for name in s.artifacts:
            a = lock.artifact(name)
            inputs.append(Input(f"inputs/{name}/{a.filename}", a.sha256, store.path(a.sha256)))
        if s.rpms:
            inputs.extend(Input(f"rpms/{r.filename}", r.sha256, store.path(r.sha256)) for r in lock.rpms)
        p = Plan(s, parent, tuple(inputs))
        plans.append(p)
        parent = p.tag
    return plans


def _folder_inputs(folder: Path) -> list[Input]:
    if not (folder / "Dockerfile").is_file():
        raise DockerError(f"{folder}/Dockerfile is missing")
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    return [
        Input(p.relative_to(folder).as_posix(), hashlib.sha256(p.read_bytes()).hexdigest(), p)
        for p in files
    ]


def ensure_base(dk: Docker, lock: Lockfile, log: Log, *, registry: str = "") -> str:
    """Tag the pinned base image as ``compatbuild/base:<pin>``; pull by digest if needed.

    With ``registry`` (a REGISTRY/REPO), the base is first looked for there by its pinned
    digest (``REPO@sha256:...``, content-addressed: a mirror made with ``skopeo copy`` or
    ``crane copy`` keeps it), and the pinned image id, when there is one, is still checked.
    """
    tag = base_tag(lock)
    if dk.image(tag) is not None:
        return tag
    image = dk.image(lock.base.id) if lock.base.id else None
    if image is None and lock.base.digest and registry:
        mirror = f"{registry}@{lock.base.digest}"
        image = dk.pull_ref(mirror)
        if image is not None:
            log(f"Pulled base image {mirror}")
    if image is None and lock.base.digest:
        image = dk.image(lock.base.pull_ref)
        if image is None:
            log(f"Pulling base image {lock.base.pull_ref}")
            try:
                image = dk.pull(lock.base.pull_ref)
            except DockerError as exc:
                raise DockerError(f"{exc}; {OFFLINE_HINT}") from None
    if image is None:
        raise DockerError(
            f"base image {lock.base.image} ({lock.base.id}) is not present and has no digest to "
            "pull; for the local test profile run `invoke test-profile`"
        )
    if lock.base.id and image.id != lock.base.id:
        raise DockerError(
            f"base image {lock.base.pull_ref} has id {image.id}, lockfile pins {lock.base.id}"
        )
    dk.tag(str(image.id), tag)
    return tag


def build_context(p: Plan) -> io.BufferedRandom:
    """A tar of exactly the stage's inputs (never the whole cache), in a temporary file."""
    f = tempfile.TemporaryFile()
    with tarfile.open(fileobj=f, mode="w") as tar:
        dirs = {"rpms"} if p.stage.rpms else set()
        for d in sorted(dirs):
            info = tarfile.TarInfo(d)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        for i in p.inputs:
            if not i.source.is_file():
                raise DockerError(
                    f"stage {p.stage.name}: {i.arcname} is not in the cache; run `invoke download`"
                )
            info = tar.gettarinfo(str(i.source), arcname=i.arcname)
            info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
            info.mode = 0o755 if i.source.stat().st_mode & 0o111 else 0o644
            with i.source.open("rb") as src:
                tar.addfile(info, src)
    f.seek(0)
    return f


def ensure_stages(
    dk: Docker,
    lock: Lockfile,
    store: Store,
    upto: str,
    *,
    log: Log = print,
    on_line: Log = print,
    nocache: bool = False,
) -> list[Plan]:
    """Build every stage up to ``upto`` whose tag does not exist yet; return the plans.

    ``nocache`` makes Docker's builder ignore its own layer cache for the stages it builds
    (an existing tag is still reused: it names exactly these inputs).
    """
    plans = plan(lock, store, upto)
    ensure_base(dk, lock, log)
    build_missing(dk, store, plans, log=log, on_line=on_line, nocache=nocache)
    return plans


def build_missing(dk: Docker, store: Store, plans: list[Plan], *, log: Log = print,
                  on_line: Log = print, nocache: bool = False) -> None:
    """Build each planned stage whose tag does not exist yet; the base must be tagged already."""
    for p in plans:
        if dk.image(p.tag) is not None:
            continue
        with store.lock(f"stage {p.tag}"):
            if dk.image(p.tag) is not None:  # another process built it while we waited
                continue
            log(f"Building stage {p.stage.name} ({p.tag})")
            started = time.monotonic()
            with build_context(p) as ctx:
                dk.build(
                    ctx,
                    tag=p.tag,
                    buildargs={"PARENT": p.parent_tag},
                    labels=p.labels,
                    on_line=on_line,
                    what=f"stage {p.stage.name}",
                    nocache=nocache,
                )
            log(f"Built stage {p.stage.name} in {time.monotonic() - started:.0f}s")


def project_images(dk: Docker) -> list[tuple[str, str, str]]:
    """(stage, tag, id) of every compatbuild image on the daemon."""
    rows = []
    for img in dk.images(f"{LABEL_PREFIX}.project={REPO}"):
        stage_name = (img.labels or {}).get(f"{LABEL_PREFIX}.stage", "?")
        for t in img.tags or ["<untagged>"]:
            rows.append((stage_name, t, str(img.id)))
    return sorted(rows)


def prune(dk: Docker, keep: set[str], log: Log = print) -> list[str]:
    """Remove compatbuild image tags not in ``keep`` (the current lockfile's); return them.

    Only tags: an untagged image carrying our labels may be an intermediate layer of a stage
    build running now (each inherits its parent's labels), and removing it would break that
    build. A tag Docker refuses to remove (a container uses it) is kept and said, and the
    others are still removed: prune never stops partway.
    """
    removed = []
    for _stage, t, _image_id in project_images(dk):
        if t == "<untagged>" or t in keep:
            continue
        try:
            dk.remove_image(t)
        except DockerError as exc:
            log(f"Kept {t}: {exc}")
            continue
        log(f"Removed {t}")
        removed.append(t)
    return removed
