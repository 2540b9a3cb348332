"""A head start: the last build's cargo started again before the pipeline has worked it out.

An edited crate's build spends ~0.2 s before cargo starts: the pipeline's and the Docker
SDK's imports, ``cargo metadata``, the image and container lookups; with zig the install and
std checks. What it then runs is nearly always what the last build with the same arguments
ran. So a build records its plan in a memo record (:mod:`tasks.memo`, keyed by every setting
and argument) that depends on everything the plan was worked out from
(:func:`tasks.pipeline.plan_watch`): the lockfile, the crate's manifests and Cargo.lock,
compatbuild's own code; for docker the fetch stamp, the builder image's id and ``DOCKER_*``;
for zig the toolchain files and every environment variable. Two kinds of plan:

- :class:`Plan`, a warm docker build's: the warm container's exec and the up-to-date check.
  When the sources differ from the stamp (the pipeline's own check), the command is started
  at once by the container's resident runner (:mod:`tasks.builder.runner`), else by an exec
  over the local daemon's socket (:mod:`tasks.builder.engine`), its output held back.
- :class:`ProcessPlan`, a zig build's: cargo-zigbuild's arguments, folder and environment, and
  the cargo it ran, as it ran it (recorded by compatbuild's ``$CARGO`` for it, :mod:`tasks.backends.zig`);
  that cargo is started at once as a child (:func:`tasks.proc.start`), its output held back.
  cargo-zigbuild's own work before cargo (``rustc -vV``, ``zig version`` twice, two ``zig cc -E``
  probes, its wrapper scripts: ~80 ms) is skipped: what it hands cargo depends only on what
  the plan watches (its arguments, every variable, the toolchain files and those wrappers).

::

    early = headstart.start(plan_run)        # a few ms; HeadStart(): no plan, nothing started
    try: ...the whole pipeline, as without it...   # backend(..., early=early.exec() / early)
    finally: early.close()                   # a zig run nobody took is stopped
    headstart.save(plan_run, watch, early, result.plan)

The pipeline decides everything as it always does, and where it would start cargo it takes
the started run only if it is that very run (same container, command, user, folder,
environment; its held lines are said first, in order). Any other is stopped (zig) or let
finish unread (docker: cargo would wait for it anyway) before the pipeline's own starts. No
result is ever taken from a run the pipeline did not arrive at itself.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

from tasks import memo, proc
from tasks.backends import uptodate
from tasks.builder import engine, runner
from tasks.builder.docker_client import warm_exec
from tasks.errors import CompatError


class Plan(NamedTuple):
    """What a warm docker build ran (:meth:`tasks.builder.docker_client.Docker.run_warm`'s
    arguments) and what its up-to-date check looked at."""

    check: uptodate.Check
    image: str  # the builder image's tag
    command: tuple[str, ...]
    volumes: Mapping[str, Mapping[str, str]]
    user: str
    working_dir: str
    environment: Mapping[str, str]


class ProcessPlan(NamedTuple):
    """What a zig build ran on this machine (cargo-zigbuild): its arguments, folder and deadline, and
    its environment as this process's less ``unset`` with ``set`` (its plan depends on every variable);
    ``cargo``: the cargo that run ran, the same way (None: not recorded; the head start runs cargo-zigbuild)."""

    argv: tuple[str, ...]
    cwd: Path
    set: Mapping[str, str]
    unset: tuple[str, ...]
    timeout: float
    what: str
    cargo: ProcessPlan | None = None

    @staticmethod
    def of(argv: Sequence[str], cwd: Path, env: Mapping[str, str], *, timeout: float, what: str,
           cargo: ProcessPlan | None = None) -> ProcessPlan:
        return ProcessPlan(tuple(argv), cwd, {k: v for k, v in env.items() if os.environ.get(k) != v},
                           tuple(sorted(k for k in os.environ if k not in env)), timeout, what, cargo)

    def environment(self) -> dict[str, str]:
        return {**{k: v for k, v in os.environ.items() if k not in self.unset}, **self.set}

    def first(self) -> ProcessPlan:
        """What a head start runs: the recorded cargo, else cargo-zigbuild itself."""
        return self.cargo or self

    def named_files(self) -> tuple[Path, ...]:
        """The files its recorded cargo's variables name (cargo-zigbuild's linker and cc wrappers, its
        cmake toolchain file): a plan that starts that cargo depends on them too."""
        values = self.cargo.set.values() if self.cargo else ()
        return tuple(sorted({Path(v) for v in values if v.startswith("/") and Path(v).is_file()}))


class HeadStart(NamedTuple):
    """The plan the record held (None: none, or something it depended on changed), and the run
    started from it (None: nothing to build, no warm container, no local daemon)."""

    plan: Plan | ProcessPlan | None = None
    started: engine.Started | proc.Running | None = None

    def exec(self) -> engine.Started | None:
        """The command started in the warm container (by its runner or docker exec), for the docker backend to take."""
        return self.started if isinstance(self.started, engine.Started) else None

    def process(self, argv: Sequence[str], cwd: Path, env: Mapping[str, str]) -> proc.Running | None:
        """The program started here, when it is what the zig build that runs ``argv`` in ``cwd`` with
        ``env`` (cargo-zigbuild) starts first (:meth:`ProcessPlan.first`); any other is stopped (None)."""
        started, plan = self.started, self.plan
        if not isinstance(started, proc.Running):
            return None
        if isinstance(plan, ProcessPlan) and (plan.argv, plan.cwd, plan.environment()) == (tuple(argv), cwd, dict(env)):
            first = plan.first()
            if (started.argv, started.cwd, started.env) == (first.argv, first.cwd, first.environment()):
                return started
        started.kill()  # started from a plan this build did not arrive at: its output is not this build's
        return None

    def close(self) -> None:
        """Stop a program started here that the build did not take (an error came first)."""
        if isinstance(self.started, proc.Running) and not self.started.finished:
            self.started.kill()


def start(run: memo.Run) -> HeadStart:
    """The recorded plan of ``run``'s build, and its run started when there is something to build."""
    hit = memo.replay(run)
    plan = hit.value if hit is not None else None
    if isinstance(plan, ProcessPlan):  # zig: the build ran cargo-zigbuild, and it cargo, as the next one will
        first = plan.first()
        try:
            return HeadStart(plan, proc.start(first.argv, what=first.what, timeout=first.timeout, cwd=first.cwd,
                                              env=first.environment()))
        except CompatError:
            return HeadStart(plan)  # the pipeline runs it, and says why it cannot
    if not isinstance(plan, Plan) or plan.user != f"{os.getuid()}:{os.getgid()}":
        return HeadStart()
    inputs, _ = uptodate.material(plan.check)
    if uptodate.fresh_outputs(plan.check.target, inputs) is not None:
        return HeadStart(plan)  # nothing to build: the pipeline starts no cargo either
    image = engine.image_id(plan.image)
    if image is None:
        return HeadStart(plan)
    _, spec = warm_exec(image, plan.command, volumes=plan.volumes, user=plan.user, working_dir=plan.working_dir,
                        environment=plan.environment, network_disabled=True)
    return HeadStart(plan, runner.start(spec, plan.check.target) or engine.start_exec(spec))


def save(run: memo.Run, watch: memo.Watch, early: HeadStart, plan: Plan | ProcessPlan | None) -> None:
    """Record ``plan`` (a warm build's) for the next build's head start, unless it is already the record's."""
    if plan is not None and plan != early.plan:
        run.save(watch, plan)
