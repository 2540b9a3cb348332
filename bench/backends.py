"""Backends: native cargo, the builder image (rust-lld, test profile) and zig (centos7, glibc
2.17), cold (target dir and zig's caches wiped) and warm (one line edited), for examples/hello
and tests/crates/with_cc (a crate with C code); interleaved, medians. Images, registry and zig
install are warm first."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from bench import harness as h
from tasks import profile as tp
from tasks.inputs import lockfile

TITLE = "Backends: native, builder image, zig"
SUMMARY = "native cargo, the builder image (rust-lld) and zig, cold and one line edited, for hello and with_cc"

PROVES = {"native": "nothing about an old glibc (links this machine's 2.36)",
          "image": "built against the target's own glibc; audit; loads in the target image",
          "zig": "zig's 2.17 stubs; audit at 2.17; loads on 2.31/2.36/2.41 sysroots (smoke --matrix)"}


def run(work: Path) -> list[h.Row]:
    """native cargo, the builder image (rust-lld, test profile) and zig (centos7, glibc 2.17),
    cold (target dir and zig's caches wiped) and warm (one line edited), for the example and
    a crate with C code; interleaved, medians. Images, registry and zig install are warm first."""
    lock = tp.prepare_profile(work / "profile", cache=tp.default_cache_dir())
    cache = h.bench_cache(tp.default_cache_dir() / "store")
    env = {"INVOKE_COMPATBUILD_CACHE": str(cache), "INVOKE_COMPATBUILD_OUT": str(work / "out")}
    crates = {"hello": h.ROOT / "examples" / "hello", "with_cc": h.ROOT / "tests" / "crates" / "with_cc"}
    cold: dict[str, Callable[[], float]] = {}
    warm: dict[str, Callable[[], float]] = {}
    for name, src in crates.items():
        crate = h.copy_crate(src, work / name)
        source = next((crate / "src").glob("lib.rs"))
        native_target = work / f"native-{name}"
        commands = {
            "native": (["cargo", "build", "--release", "--quiet", "--target-dir", str(native_target)], crate, None),
            "image": (h.invoke("build", "--lock", str(lock), "--linker", "rust-lld", "--crate", str(crate)),
                      h.ROOT, env),
            "zig": (h.invoke("build", "--backend", "zig", "--target", "centos7", "--crate", str(crate)), h.ROOT, env),
        }
        for cmd, cwd, extra in commands.values():
            h.run(cmd, extra, cwd)  # warm: images, registry, zig install; and creates the target dirs
        profile_target = lockfile.load(lock).target.name
        wipe = {
            "native": [native_target],
            "image": list((cache / "targets" / profile_target).glob(f"{name}-*")),
            "zig": [*(cache / "targets" / "centos7").glob(f"{name}-*-zig"), cache / "zig" / "cache"],
        }
        for backend, (cmd, cwd, extra) in commands.items():
            def wiped(cmd: list[str] = cmd, cwd: Path = cwd, extra: dict[str, str] | None = extra,
                      where: list[Path] = wipe[backend]) -> float:
                for w in where:
                    shutil.rmtree(w, ignore_errors=True)
                return h.run(cmd, extra, cwd)

            def edited(cmd: list[str] = cmd, cwd: Path = cwd, extra: dict[str, str] | None = extra,
                       source: Path = source) -> float:
                h.edit(source)
                return h.run(cmd, extra, cwd)

            cold[f"{name}/{backend}"] = wiped
            warm[f"{name}/{backend}"] = edited
    cold_t = h.interleave(3, **cold)
    warm_t = h.interleave(5, **warm)
    rows: list[h.Row] = []
    for name in crates:
        for backend in ("native", "image", "zig"):
            key = f"{name}/{backend}"
            rows.append((f"{name}, {backend}: cold / one line edited", f"{cold_t[key]:.2f} s / {warm_t[key]:.2f} s",
                         f"native {cold_t[name + '/native']:.2f} s / {warm_t[name + '/native']:.2f} s",
                         f"{cold_t[key] / cold_t[name + '/native']:.2f}x / "
                         f"+{warm_t[key] - warm_t[name + '/native']:.2f} s; {PROVES[backend]}"))
    return rows
