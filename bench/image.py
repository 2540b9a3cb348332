"""Builder image (test profile): cold, warm (nothing changed, vs ``invoke --list``), and after
changing only the Rust input."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

from bench import harness as h
from tasks import profile as tp
from tasks.builder import stages
from tasks.builder.docker_client import connect
from tasks.inputs import lockfile
from tasks.store import Store, sha256_file

TITLE = "Builder image (test profile)"
SUMMARY = "the test-profile image cold, warm (no-op), and after changing only the Rust input"


def run(work: Path) -> list[h.Row]:
    cache = h.bench_cache(work / "cache")
    env = {"INVOKE_COMPATBUILD_CACHE": str(cache)}
    lock = tp.prepare_profile(work / "profile", cache=tp.default_cache_dir())
    dk = connect()
    plans = stages.plan(lockfile.load(lock), Store(cache), "builder")
    for p in reversed(plans):  # cold: remove this lockfile's stage images (the base stays)
        dk.remove_image(p.tag)
    cold, cold_out = h.run_output(h.invoke("image", "--no-cache", "--lock", str(lock)), env)
    cold_stages = h.stage_times(cold_out)
    warm = statistics.median(h.run(h.invoke("image", "--lock", str(lock)), env) for _ in range(5))
    listing = statistics.median(h.run(h.invoke("--list")) for _ in range(5))
    # The same real toolchain packed under another version name: a new Rust input.
    version = f"1.95.0-bench{int(time.time())}"  # a Rust input never built before
    rust = tp.make_rust_installer(work / "rust2", version=version, cache=work / "rustcache")
    text = lock.read_text()
    old = lockfile.load(lock).artifact("rust")
    variant = work / "variant.toml"
    variant.write_text(text.replace(old.url, rust.as_uri()).replace(old.sha256, sha256_file(rust)))
    rebuild, rebuild_out = h.run_output(h.invoke("image", "--no-cache", "--lock", str(variant)), env)
    rebuild_stages = h.stage_times(rebuild_out)
    return [
        (f"`invoke image`, cold (built: {cold_stages})", f"{cold:.0f} s", "", "1.00"),
        ("`invoke image`, nothing changed", f"{warm:.2f} s", f"`--list` {listing:.2f} s",
         f"{warm / cold:.3f} of cold; {warm / listing:.2f}x `--list`"),
        (f"`invoke image`, only the Rust input changed (built: {rebuild_stages})", f"{rebuild:.0f} s",
         f"cold {cold:.0f} s",
         f"{rebuild / cold:.2f} of cold"),
    ]
