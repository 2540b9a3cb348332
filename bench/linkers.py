"""Linker strategies (test profile): each linker from a cold image (only base and rpms shared)
to a built plugin, a warm rebuild after touching one file, and the weak-version fix-up's cost
per library.

Non-destructive: make and rust get new bytes (re-gzipped), so every stage above rpms gets a new
tag and builds cold with --no-cache; those images are removed afterwards.
"""

from __future__ import annotations

import gzip
import shutil
import statistics
import time
from pathlib import Path

from bench import harness as h
from tasks import profile as tp
from tasks.builder import stages
from tasks.builder.docker_client import connect
from tasks.inputs import lockfile
from tasks.store import Store, sha256_file

TITLE = "Linker strategies (test profile)"
SUMMARY = "each linker strategy from a cold image to a built plugin, a warm rebuild, the weak-version fix-up's cost"


def _regzip(src: Path, dest: Path) -> Path:
    """The same tar under a new gzip header (mtime): new bytes, so new stage tags, same content."""
    with gzip.open(src, "rb") as inp, gzip.GzipFile(dest, "wb", compresslevel=1, mtime=int(time.time())) as out:
        shutil.copyfileobj(inp, out, 1 << 20)
    return dest


def run(work: Path) -> list[h.Row]:
    """Each linker strategy from a cold image (only base and rpms shared) to a built plugin,
    a warm rebuild after touching one file, and the weak-version fix-up's cost per library."""
    from tasks.elf.fixup import fix_weak_needs

    crate = h.copy_crate(h.PLUGIN, work / "plugin")
    lock = tp.prepare_profile(work / "profile", cache=tp.default_cache_dir())
    base = lockfile.load(lock)
    text = lock.read_text()
    for name in ("make", "rust"):
        a = base.artifact(name)
        fresh = _regzip(Path(a.url.removeprefix("file://")), work / a.filename)
        text = text.replace(a.url, fresh.as_uri()).replace(a.sha256, sha256_file(fresh))
    variant = work / "variant.toml"
    variant.write_text(text)
    cache = work / "cache"  # private: the bench's own store and target dirs
    dk = connect()
    made = {p.tag for linker in lockfile.LINKERS for p in stages.plan(lockfile.load(variant, linker=linker),
                                                                      Store(cache), "builder")
            if p.stage.name not in ("rpms",)}
    results: dict[str, tuple[float, str, float, float]] = {}
    builds: dict[str, tuple[list[str], dict[str, str]]] = {}
    try:
        for linker in lockfile.LINKERS:
            env = {"INVOKE_COMPATBUILD_CACHE": str(cache), "INVOKE_COMPATBUILD_OUT": str(work / f"out-{linker}")}
            image, image_out = h.run_output(
                h.invoke("image", "--no-cache", "--lock", str(variant), "--linker", linker), env)
            built = h.stage_times(image_out)
            build = h.invoke("build", "--lock", str(variant), "--linker", linker, "--crate", str(crate))
            builds[linker] = (build, env)
            first = h.run(build, env)  # includes its image's own `cargo fetch`
            results[linker] = (image, built, first, 0.0)

        def touched(linker: str) -> float:
            (crate / "src" / "lib.rs").touch()
            return h.run(*builds[linker])

        warm = h.interleave(5, **{linker.replace("-", "_"): (lambda ln=linker: touched(ln)) for linker in builds})
        for linker in builds:
            image, built, first, _ = results[linker]
            results[linker] = (image, built, first, warm[linker.replace("-", "_")])
        env = {"INVOKE_COMPATBUILD_CACHE": str(cache), "INVOKE_COMPATBUILD_OUT": str(work / "out-unfixed")}
        (crate / "src" / "lib.rs").touch()
        unfixed_build = h.run(h.invoke("build", "--lock", str(variant), "--crate", str(crate), "--no-fix-weak"), env)
    finally:
        for tag in sorted(made, reverse=True):
            dk.remove_image(tag)
    rows: list[h.Row] = []
    for linker, (image, built, first, warm_t) in results.items():
        rows.append((f"linker `{linker}`: `invoke image`, cold (built: {built})", f"{image:.0f} s", "", ""))
        rows.append((f"linker `{linker}`: first `invoke build` of the plugin", f"{first:.1f} s", "", ""))
        rows.append((f"linker `{linker}`: `invoke build`, one file touched", f"{warm_t:.2f} s", "", ""))
    llvm, lld = results["llvm"], results["rust-lld"]
    rows.append(("cold image to first library, rust-lld vs llvm", f"{lld[0] + lld[2]:.0f} s",
                 f"llvm {llvm[0] + llvm[2]:.0f} s", f"{(lld[0] + lld[2]) / (llvm[0] + llvm[2]):.2f}x"))
    [lib] = (work / "out-unfixed").rglob("libplugin.so")
    times = []
    for i in range(9):
        copy = work / f"fix-{i}.so"
        shutil.copyfile(lib, copy)
        start = time.perf_counter()
        report = fix_weak_needs(copy)
        times.append(time.perf_counter() - start)
        assert report.changed
    again = statistics.median(h.timed(lambda: fix_weak_needs(work / "fix-0.so")) for _ in range(9))
    fix = statistics.median(times)
    rows.append((f"weak-version fix-up, one library ({lib.stat().st_size / 1e6:.1f} MB)", f"{fix * 1000:.0f} ms",
                 f"`invoke build` {unfixed_build:.2f} s", f"{fix / unfixed_build:.3f} of a build"))
    rows.append(("weak-version fix-up, already fixed (reads only)", f"{again * 1000:.0f} ms", "", ""))
    return rows
