"""build and smoke (test profile, warm image): native ``cargo build`` vs ``invoke build`` of the
same crate, cold and after a one-line edit (warm container, and --no-warm); the no-change ``invoke build`` and the
cached ``invoke smoke`` (its verdict cached) vs ``invoke --list``, all three interleaved."""

from __future__ import annotations

import shutil
from pathlib import Path

from bench import harness as h
from tasks import profile as tp
from tasks.inputs import lockfile

TITLE = "build and smoke (test profile, warm image)"
SUMMARY = "native cargo vs `invoke build` of bench/crates/plugin, cold and one line edited; no-op build, cached smoke"


def run(work: Path) -> list[h.Row]:
    crate = h.copy_crate(h.PLUGIN, work / "plugin")
    lock = tp.prepare_profile(work / "profile", cache=tp.default_cache_dir())
    cache = h.bench_cache(work / "cache")
    env = {"INVOKE_COMPATBUILD_CACHE": str(cache), "INVOKE_COMPATBUILD_OUT": str(work / "out")}
    build = h.invoke("build", "--lock", str(lock), "--crate", str(crate))
    h.run(build, env)  # images and registry warm
    native_target = work / "native-target"
    native = ["cargo", "build", "--release", "--target-dir", str(native_target)]
    h.run(native, cwd=crate)
    lib = crate / "src" / "lib.rs"

    def wipe_and(cmd: list[str], extra: dict[str, str] | None, cwd: Path, where: Path) -> float:
        shutil.rmtree(where, ignore_errors=True)
        return h.run(cmd, extra, cwd)

    target_name = lockfile.load(lock).target.name
    ours_target = next((cache / "targets" / target_name).glob("plugin-*"))  # keyed by target
    cold = h.interleave(
        3,
        native=lambda: wipe_and(native, None, crate, native_target),
        ours=lambda: wipe_and(build, env, h.ROOT, ours_target),
    )

    def edited(cmd: list[str], extra: dict[str, str] | None, cwd: Path) -> float:
        h.edit(lib)
        return h.run(cmd, extra, cwd)

    inc = h.interleave(5, native=lambda: edited(native, None, crate), ours=lambda: edited(build, env, h.ROOT),
                       cold_container=lambda: edited([*build, "--no-warm"], env, h.ROOT))
    smoke = h.invoke("smoke", "--lock", str(lock))
    h.run(build, env)
    h.run(smoke, env)  # the verdict of this library on this image is now cached
    chain = h.interleave(7, noop=lambda: h.run(build, env), smoke=lambda: h.run(smoke, env),
                         listing=lambda: h.run(h.invoke("--list")))
    noop = chain["noop"]  # nothing to compile: the fixed cost
    return [
        ("`invoke build` plugin, nothing changed (fixed cost)", f"{noop:.2f} s", f"`--list` {chain['listing']:.2f} s",
         f"{noop / chain['listing']:.2f}x `--list`, +{noop - chain['listing']:.2f} s"),
        ("`invoke build` plugin, cold target", f"{cold['ours']:.2f} s", f"native cargo {cold['native']:.2f} s",
         f"{cold['ours'] / cold['native']:.2f}x native"),
        ("`invoke build` plugin, one line edited (warm container)", f"{inc['ours']:.2f} s",
         f"native cargo {inc['native']:.2f} s", f"{inc['ours'] / inc['native']:.2f}x native"),
        ("`invoke build --no-warm` plugin, one line edited", f"{inc['cold_container']:.2f} s",
         f"native cargo {inc['native']:.2f} s", f"{inc['cold_container'] / inc['native']:.2f}x native"),
        ("`invoke smoke`, everything cached", f"{chain['smoke']:.2f} s", f"`--list` {chain['listing']:.2f} s",
         f"{chain['smoke'] / chain['listing']:.2f}x `--list`"),
    ]
