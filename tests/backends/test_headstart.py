"""A build's head start (tasks/backends/headstart.py), on the real daemon and the test profile's builder image:
the last warm build's exec started before the pipeline has worked it out, taken only when it is the exec the
pipeline arrives at, and never started from a plan whose grounds changed."""

from __future__ import annotations

import dataclasses
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from tasks import memo, pipeline
from tasks.backends import headstart
from tasks.backends.outputs import BuildResult
from tasks.builder import engine, runner
from tasks.builder.docker_client import Docker, warm_exec
from tasks.builder.engine import Exec
from tasks.inputs import lockfile
from tasks.inputs.lockfile import Lockfile
from tasks.settings import PROJECT_ROOT, Settings

pytestmark = pytest.mark.docker

HELLO = PROJECT_ROOT / "examples" / "hello"


class Counting(Docker):
    """The real client, counting the commands it starts itself in a warm container (not a head
    start's): by docker exec, or by the container's runner (the fixture counts those)."""

    def __init__(self, dk: Docker) -> None:
        super().__init__(dk.client)
        self.execs: list[tuple[str, ...]] = []

    def _exec_split(self, c: Any, spec: Exec, *, on_stderr: Callable[[str], None] | None) -> tuple[int, str, str]:
        self.execs.append(spec.command)
        return super()._exec_split(c, spec, on_stderr=on_stderr)


@pytest.fixture()
def setup(docker_client: Docker, profile_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
          ) -> tuple[Counting, Lockfile, Settings, Path, memo.Run]:
    counting = Counting(docker_client)
    begin = runner.start

    def counted(spec: Exec, target: Path) -> runner.RunnerStarted | None:
        begun = begin(spec, target)
        if begun is not None:
            counting.execs.append(spec.command)
        return begun

    monkeypatch.setattr(runner, "start", counted)
    crate = tmp_path / "hello"
    shutil.copytree(HELLO, crate, ignore=shutil.ignore_patterns("target"))
    settings = dataclasses.replace(profile_settings, out=tmp_path / "out")
    run = memo.Run(settings.cache, "build-plan", {"test": str(tmp_path)})
    return counting, lockfile.load(settings.lock), settings, crate, run


def _build(dk: Docker, lock: Lockfile, settings: Settings, crate: Path, lines: list[str],
           early: headstart.HeadStart | None = None) -> BuildResult:
    return pipeline.build(dk, lock, settings, crate, log=lines.append, on_line=lines.append, early=early)


def _planned(dk: Docker, lock: Lockfile, settings: Settings, crate: Path, run: memo.Run) -> BuildResult:
    """A first build, and its plan recorded (as the next build's run records it: the first one's
    fetch wrote Cargo.lock while it ran, and a record of a run whose inputs changed is not kept)."""
    first = _build(dk, lock, settings, crate, [])
    assert first.plan is not None  # a warm build on the local daemon: its plan is the next one's head start
    run.started = time.time_ns()
    headstart.save(run, pipeline.plan_watch(settings, lock, first), headstart.HeadStart(), first.plan)
    assert run.path.is_file()
    return first


def _exec_of(plan: headstart.Plan, command: Sequence[str]) -> Exec:
    """The exec of ``command`` in the warm container ``plan`` names."""
    image = engine.image_id(plan.image)
    assert image is not None
    return warm_exec(image, command, volumes=plan.volumes, user=plan.user, working_dir=plan.working_dir,
                     environment=plan.environment, network_disabled=True)[1]


def _edit(crate: Path, says: str) -> None:
    source = crate / "src" / "lib.rs"
    source.write_text(source.read_text().replace('"compatbuild"', f'"{says}"'))


def test_an_edited_build_takes_the_exec_its_head_start_began(
        setup: tuple[Counting, Lockfile, Settings, Path, memo.Run]) -> None:
    dk, lock, settings, crate, run = setup
    first = _planned(dk, lock, settings, crate, run)
    unchanged = headstart.start(run)
    assert unchanged.plan == first.plan and unchanged.started is None  # up to date: no cargo to start
    says = "compatbuild, built from its head start"  # long: kept in .rodata as is
    _edit(crate, says)
    early = headstart.start(run)
    assert early.plan == first.plan and early.started is not None
    dk.execs.clear()
    lines: list[str] = []
    again = _build(dk, lock, settings, crate, lines, early)
    assert dk.execs == []  # cargo ran once: the head start's exec, taken
    assert says.encode() in again.libraries[0].read_bytes()
    building = next(i for i, ln in enumerate(lines) if ln.startswith("Building hello"))
    compiling = next(i for i, ln in enumerate(lines) if "Compiling hello" in ln)
    assert building < compiling  # said in the order a build without a head start says it


def test_a_head_start_of_another_exec_is_let_finish_unread_and_the_build_runs_its_own(
        setup: tuple[Counting, Lockfile, Settings, Path, memo.Run]) -> None:
    dk, lock, settings, crate, run = setup
    plan = _planned(dk, lock, settings, crate, run).plan
    assert isinstance(plan, headstart.Plan)
    other = engine.start_exec(_exec_of(plan, ["sh", "-c", "sleep 1; echo not this build >&2"]))
    assert other is not None
    _edit(crate, "compatbuild, built by its own exec")
    dk.execs.clear()
    lines: list[str] = []
    started = time.monotonic()
    again = _build(dk, lock, settings, crate, lines, headstart.HeadStart(plan, other))
    assert time.monotonic() - started > 1  # the other exec ended first
    assert len(dk.execs) == 1 and "cargo" in dk.execs[0]  # then the build's own exec
    assert not any("not this build" in ln for ln in lines)
    assert b"built by its own exec" in again.libraries[0].read_bytes()


@pytest.mark.parametrize("change", ["manifest", "lockfile", "docker host"])
def test_no_head_start_from_a_plan_whose_grounds_changed(
        setup: tuple[Counting, Lockfile, Settings, Path, memo.Run], tmp_path: Path, change: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    dk, lock, settings, crate, run = setup
    if change == "lockfile":  # a copy of the profile's lockfile, to change
        copy = tmp_path / "rsrc.lock.toml"
        shutil.copy(settings.lock, copy)
        settings = dataclasses.replace(settings, lock=copy)
        lock = lockfile.load(copy)
    _planned(dk, lock, settings, crate, run)
    _edit(crate, "compatbuild, edited")
    if change == "manifest":
        with (crate / "Cargo.toml").open("a") as f:
            f.write("\n# a comment: the plan may differ\n")
    elif change == "lockfile":
        with settings.lock.open("a") as f:
            f.write("\n# a comment\n")
    else:
        monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:9")  # the plan's daemon is not this one
    assert headstart.start(run) == headstart.HeadStart()


def test_no_head_start_without_its_warm_container(
        setup: tuple[Counting, Lockfile, Settings, Path, memo.Run]) -> None:
    dk, lock, settings, crate, run = setup
    plan = _planned(dk, lock, settings, crate, run).plan
    assert isinstance(plan, headstart.Plan)
    dk.client.containers.get(_exec_of(plan, plan.command).container).remove(force=True)  # it idled out, say
    _edit(crate, "compatbuild, after its container went")
    early = headstart.start(run)
    assert early.plan == plan and early.started is None  # nothing to exec into: the pipeline makes a new one
    again = _build(dk, lock, settings, crate, [], early)
    assert b"after its container went" in again.libraries[0].read_bytes()


def test_the_engine_asks_only_a_local_daemon_and_answers_none_when_it_cannot(
        monkeypatch: pytest.MonkeyPatch) -> None:
    assert engine.start_exec(Exec.of("compatbuild-no-such-container", ["true"], user="0:0", working_dir="/",
                                     environment={})) is None
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    assert engine.call("GET", "/version") is None
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:2375")
    assert engine.local_socket() is None and engine.image_id("anything") is None
