"""Fault injection beyond the inputs (issue 8): kill -9 during `invoke build` and while a
sysroot is unpacked, orphaned containers, and eight concurrent builds of one crate.

Kill points come from ``random.Random(seed)``; the seed is printed and
``COMPATBUILD_FAULT_SEED=<seed>`` replays a run. After each kill a clean re-run must succeed,
its library must pass the audit, and nothing the killed process left may be taken for a good
output (or left behind: its containers and temporaries are swept by the next run).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tasks.builder import runner
from tasks.builder.docker_client import LABEL_PREFIX, WARM_LABEL, Docker
from tasks.dlopen.sysroot import STAMP, make_sysroot_from_debs
from tasks.elf.audit import audit_library
from tasks.settings import PROJECT_ROOT, Settings

pytestmark = [pytest.mark.faults, pytest.mark.docker]
HELLO = PROJECT_ROOT / "examples" / "hello"


def _seed() -> int:
    return int(os.environ.get("COMPATBUILD_FAULT_SEED") or random.SystemRandom().randrange(1 << 20))


def _env(settings: Settings, out: Path) -> dict[str, str]:
    return {**{k: v for k, v in os.environ.items() if not k.startswith("INVOKE_COMPATBUILD_")},
            "INVOKE_COMPATBUILD_LOCK": str(settings.lock), "INVOKE_COMPATBUILD_CACHE": str(settings.cache),
            "INVOKE_COMPATBUILD_OUT": str(out), "INVOKE_COMPATBUILD_PROGRESS": "never"}


def _build(crate: Path, env: dict[str, str]) -> list[str]:
    return [sys.executable, "-m", "invoke", "build", "--crate", str(crate)]


def _orphans(dk: Docker, pid: int) -> list[str]:
    """The containers ``pid`` left that are not in use: a running warm container is the next build's."""
    found = dk.client.api.containers(all=True, filters={"label": f"{LABEL_PREFIX}.pid={pid}"})
    return [str(c["Id"]) for c in found if not (WARM_LABEL in (c.get("Labels") or {}) and c["State"] == "running")]


def _warm(dk: Docker, crate: Path) -> list[str]:
    """The running warm containers that mount ``crate`` (the listing's own fields: one idling out
    meanwhile is not inspected after it is gone)."""
    return [str(c["Id"]) for c in dk.client.api.containers(filters={"label": WARM_LABEL})
            if any(m.get("Source") == str(crate) for m in c.get("Mounts") or [])]


def _requests(settings: Settings, crate: Path) -> list[str]:
    """The warm runner's request folders left in ``crate``'s target dirs (tasks/builder/runner.py)."""
    from tasks.backends.crate import inspect_crate
    from tasks.backends.outputs import target_dir
    from tasks.inputs.lockfile import load

    home = target_dir(settings, load(settings.lock), inspect_crate(crate)) / runner.HOME
    return [p.name for p in home.iterdir() if p.is_dir()] if home.is_dir() else []


def test_kill_9_during_build_then_a_clean_rerun_succeeds(
    docker_client: Docker, profile_settings: Settings, tmp_path: Path,
) -> None:
    seed = _seed()
    print(f"fault seed: {seed} (replay with COMPATBUILD_FAULT_SEED={seed})")
    rng = random.Random(seed)
    crate = tmp_path / "hello"
    shutil.copytree(HELLO, crate, ignore=shutil.ignore_patterns("target"))
    out = tmp_path / "out"
    env = _env(profile_settings, out)
    first = subprocess.run(_build(crate, env), cwd=PROJECT_ROOT, env=env, capture_output=True, text=True,
                           timeout=900)
    assert first.returncode == 0, first.stderr  # the fetch and a warm target dir: kills land in cargo
    source = crate / "src" / "lib.rs"
    for point in range(6):
        source.write_text(source.read_text() + f"\n// fault point {point}\n")  # cargo must compile again
        proc = subprocess.Popen(_build(crate, env), cwd=PROJECT_ROOT, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.3, 3.0))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        again = subprocess.run(_build(crate, env), cwd=PROJECT_ROOT, env=env, capture_output=True, text=True,
                               timeout=900)
        assert again.returncode == 0, (seed, point, again.stderr)
        record = json.loads(next(out.glob("*/last-build.json")).read_text())
        [lib] = [Path(p) for p in record["libraries"]]
        assert audit_library(lib, target_glibc="2.31").ok, (seed, point)
        assert _orphans(docker_client, proc.pid) == [], (seed, point)  # swept by the re-run
        assert len(_warm(docker_client, crate)) <= 1, (seed, point)  # the killed run's warm one, reused
        assert _requests(profile_settings, crate) == [], (seed, point)  # its runner request, swept
        assert not [p.name for p in lib.parent.iterdir() if p.name.endswith((".part", ".old"))]


def test_an_orphaned_container_is_removed_and_a_foreign_one_never(
    docker_client: Docker, profile_lock: Path, tmp_path: Path,
) -> None:
    from tasks.inputs import lockfile

    image = lockfile.load(profile_lock).base.id or ""
    script = ("import sys, time; sys.path.insert(0, sys.argv[1]); from tasks.builder.docker_client import connect\n"
              "with connect().container(sys.argv[2], ['sleep', '600']) as c:\n"
              "    print(c.id, flush=True); time.sleep(600)\n")
    proc = subprocess.Popen([sys.executable, "-c", script, str(PROJECT_ROOT), image], stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout is not None
    orphan = proc.stdout.readline().strip()
    foreign = docker_client.client.containers.create(image, ["true"])  # not compatbuild's
    try:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert _orphans(docker_client, proc.pid) != []  # kill -9: nothing removed it
        removed = docker_client.remove_orphans()
        assert orphan in removed and _orphans(docker_client, proc.pid) == []
        assert foreign.id not in removed
        foreign.reload()  # still there
    finally:
        foreign.remove(force=True)


def test_kill_9_while_a_sysroot_is_unpacked_then_a_clean_rerun_completes_it(
    debs: list[Path], tmp_path: Path,
) -> None:
    seed = _seed()
    print(f"fault seed: {seed} (replay with COMPATBUILD_FAULT_SEED={seed})")
    rng = random.Random(seed)
    dest = tmp_path / "sysroot"
    script = ("import sys; from pathlib import Path; sys.path.insert(0, sys.argv[1])\n"
              "from tasks.dlopen.sysroot import make_sysroot_from_debs\n"
              "make_sysroot_from_debs([Path(p) for p in sys.argv[3:]], Path(sys.argv[2]), log=lambda _: None)\n")
    for point in range(5):
        if dest.exists():
            shutil.rmtree(dest)
        proc = subprocess.Popen([sys.executable, "-c", script, str(PROJECT_ROOT), str(dest), *map(str, debs)])
        time.sleep(rng.uniform(0.05, 1.5))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if dest.exists():  # it finished before the kill: a complete sysroot, stamped
            assert (dest / STAMP).is_file(), (seed, point)
        make_sysroot_from_debs(debs, dest, log=lambda _: None)
        assert (dest / STAMP).is_file() and any(dest.rglob("ld-linux-x86-64.so.2")), (seed, point)
        left = [p.name for p in tmp_path.iterdir() if p.name.endswith((".part", ".old"))]
        assert left == [], (seed, point, left)  # the killed writer's half-made tree was swept


def test_eight_concurrent_builds_of_one_crate_all_succeed_with_one_library(
    docker_client: Docker, profile_settings: Settings, tmp_path: Path,
) -> None:
    crate = tmp_path / "hello"
    shutil.copytree(HELLO, crate, ignore=shutil.ignore_patterns("target"))
    out = tmp_path / "out"
    env = _env(profile_settings, out)
    procs = [subprocess.Popen(_build(crate, env), cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(8)]
    results = [p.communicate(timeout=900) + (p.returncode,) for p in procs]
    assert [r[2] for r in results] == [0] * 8, [r[1][-500:] for r in results if r[2]]
    [lib] = list(out.glob("*/libhello.so"))
    assert audit_library(lib, target_glibc="2.31").ok
    assert not [p.name for p in lib.parent.iterdir() if p.name.endswith((".part", ".old", ".tmp"))]
    assert len(_warm(docker_client, crate)) == 1  # all eight built in one warm container
    assert _requests(profile_settings, crate) == []  # each took its runner request away
