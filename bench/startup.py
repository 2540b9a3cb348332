"""Start-up and no-op tasks: ``invoke --list`` vs ``python -c "import invoke"``; a cached
``download verify``, a cached ``smoke`` and a no-change ``build`` on both backends vs
``invoke --list``; and the one-line-edit build loop on both backends vs native cargo (the
docker backend in its warm container, with and without its head start), beside their floors: the
same cargo by ``docker exec``, cargo-zigbuild by hand, and the cargo it runs by hand. Interleaved
in one run, medians."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from bench import harness as h
from tasks import memo
from tasks import profile as tp
from tasks.backends import headstart
from tasks.builder import engine
from tasks.builder.docker_client import warm_exec

TITLE = "start-up, no-op tasks and the edit loop (test profile, warm image)"
SUMMARY = ("`--list` vs `import invoke`; cached download verify, cached smoke, no-change build (both backends) "
           "vs `--list`; one line edited vs native cargo")


def run(work: Path) -> list[h.Row]:
    crate = h.copy_crate(h.PLUGIN, work / "plugin")
    lock = str(tp.prepare_profile(work / "profile", cache=tp.default_cache_dir()))
    cache = h.bench_cache(work / "cache")
    env = {"INVOKE_COMPATBUILD_CACHE": str(cache), "INVOKE_COMPATBUILD_OUT": str(work / "out")}
    zig_env = {**env, "INVOKE_COMPATBUILD_OUT": str(work / "out-zig")}  # its own copies: neither rebuilds
    build = h.invoke("build", "--lock", lock, "--crate", str(crate))
    zig = h.invoke("build", "--lock", lock, "--backend", "zig", "--crate", str(crate))
    inputs = h.invoke("download", "--lock", lock, "verify", "--lock", lock)
    smoke = h.invoke("smoke", "--lock", lock)
    for cmd, extra in ((build, env), (zig, zig_env), (inputs, env), (smoke, env)) * 2:
        h.run(cmd, extra)  # images, zig install, inputs, the smoke verdict cached; then each run with
        # nothing to do recorded (tasks/memo.py): what a user's second no-op run and every later one costs
    native_target = work / "native-target"
    native = ["cargo", "build", "--release", "--target-dir", str(native_target)]
    h.run(native, cwd=crate)
    listing = h.invoke("--list")
    start = h.interleave(
        9,
        bare=lambda: h.run([sys.executable, "-c", "import invoke"]),
        listing=lambda: h.run(listing),
        inputs=lambda: h.run(inputs, env),
        smoke=lambda: h.run(smoke, env),
        noop=lambda: h.run(build, env),
        noop_zig=lambda: h.run(zig, zig_env),
    )
    source = crate / "src" / "lib.rs"

    def edited(cmd: list[str], extra: dict[str, str] | None, cwd: Path) -> float:
        h.edit(source)
        return h.run(cmd, extra, cwd)

    # The docker build's own plan record (tasks/backends/headstart.py), told apart from the zig
    # build's by which one a docker build writes: only it is removed before a build "without".
    plans = cache / "memo"
    for plan in plans.glob("build-plan-*.json"):
        plan.unlink()
    edited(build, env, h.ROOT)
    docker_plans = set(plans.glob("build-plan-*.json"))
    edited(zig, zig_env, h.ROOT)  # and the zig build's, which every zig edit below then starts from
    # The floors: the very cargo each build runs, run by hand (docker exec into the warm container;
    # cargo-zigbuild with the plan's arguments, folder and environment), as no compatbuild wraps it.
    [docker_plan] = [memo.value_of(p) for p in docker_plans]
    [zig_plan] = [memo.value_of(p) for p in set(plans.glob("build-plan-*.json")) - docker_plans]
    assert isinstance(docker_plan, headstart.Plan) and isinstance(zig_plan, headstart.ProcessPlan)
    image = engine.image_id(docker_plan.image)
    assert image is not None
    _, spec = warm_exec(image, docker_plan.command, volumes=docker_plan.volumes, user=docker_plan.user,
                        working_dir=docker_plan.working_dir, environment=docker_plan.environment,
                        network_disabled=True)
    by_exec = ["docker", "exec", "-u", spec.user, "-w", spec.working_dir,
               *(f"--env={k}={v}" for k, v in spec.environment), spec.container, *docker_plan.command]

    def zig_by_hand() -> float:
        h.edit(source)
        started = time.perf_counter()
        subprocess.run(list(zig_plan.argv), cwd=zig_plan.cwd, env=zig_plan.environment(), capture_output=True,
                       check=True)
        return time.perf_counter() - started

    zig_cargo = zig_plan.cargo
    assert zig_cargo is not None, "the zig build recorded no cargo (tasks/backends/zig.py CARGO_SHIM)"

    def zig_cargo_by_hand() -> float:  # what the zig head start runs: cargo with cargo-zigbuild's environment
        h.edit(source)
        started = time.perf_counter()
        subprocess.run(list(zig_cargo.argv), cwd=zig_cargo.cwd, env=zig_cargo.environment(), capture_output=True,
                       check=True)
        return time.perf_counter() - started

    def without_head_start() -> float:  # the pipeline starts cargo itself
        for plan in docker_plans:
            plan.unlink(missing_ok=True)
        return edited(build, env, h.ROOT)

    loop = h.interleave(11, native=lambda: edited(native, None, crate), ours=lambda: edited(build, env, h.ROOT),
                        zig=lambda: edited(zig, zig_env, h.ROOT), cold=without_head_start,
                        by_exec=lambda: edited(by_exec, None, h.ROOT), zig_by_hand=zig_by_hand,
                        zig_cargo=zig_cargo_by_hand)
    lst = start["listing"]

    def vs_list(what: str, key: str) -> h.Row:
        return (what, f"{start[key]:.2f} s", f"`--list` {lst:.2f} s", f"{start[key] / lst:.2f}x `--list`")

    return [
        ("`invoke --list`", f"{lst:.2f} s", f"`python -c 'import invoke'` {start['bare']:.2f} s",
         f"{lst / start['bare']:.2f}x `import invoke`"),
        vs_list("`invoke download verify`, all cached", "inputs"),
        vs_list("`invoke smoke`, verdict cached", "smoke"),
        vs_list("`invoke build`, nothing changed (docker)", "noop"),
        vs_list("`invoke build --backend zig`, nothing changed", "noop_zig"),
        ("`invoke build`, one line edited (docker, warm container)", f"{loop['ours']:.2f} s",
         f"native cargo {loop['native']:.2f} s", f"{loop['ours'] / loop['native']:.2f}x native"),
        ("`invoke build`, one line edited, without the head start (its plan removed)", f"{loop['cold']:.2f} s",
         f"native cargo {loop['native']:.2f} s", f"{loop['cold'] / loop['native']:.2f}x native"),
        ("`invoke build --backend zig`, one line edited", f"{loop['zig']:.2f} s",
         f"native cargo {loop['native']:.2f} s", f"{loop['zig'] / loop['native']:.2f}x native"),
        ("floor: the same cargo by `docker exec` into the warm container, one line edited",
         f"{loop['by_exec']:.2f} s", f"native cargo {loop['native']:.2f} s",
         f"{loop['by_exec'] / loop['native']:.2f}x native"),
        ("floor: cargo-zigbuild run by hand with the plan's arguments, one line edited",
         f"{loop['zig_by_hand']:.2f} s", f"native cargo {loop['native']:.2f} s",
         f"{loop['zig_by_hand'] / loop['native']:.2f}x native"),
        ("floor: the cargo cargo-zigbuild runs, by hand with its environment (what the zig head start runs)",
         f"{loop['zig_cargo']:.2f} s", f"native cargo {loop['native']:.2f} s",
         f"{loop['zig_cargo'] / loop['native']:.2f}x native"),
    ]
