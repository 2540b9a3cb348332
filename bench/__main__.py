"""compatbuild benchmarks: ratios measured in one run, printed as Markdown tables.

    python -m bench [inputs] [image] [build] [linkers] [backends] [registry]   (or: nox -s bench -- inputs)

These machines are noisy, so every number is compared with a baseline measured in the same
run, interleaved, and the median of several repetitions is kept:

- inputs: download throughput of a 4 GiB file from loopback, ``invoke download`` vs
  ``curl``; the cached no-op of ``invoke download`` + ``invoke verify`` vs ``invoke --list``.
- image: the test-profile image cold, warm (no-op), and after changing only the Rust input.
- linkers: each linker strategy from a cold image to a built plugin, a warm rebuild, and
  the weak-version fix-up's cost per library.
- backends: native cargo, the builder image (rust-lld) and zig, cold and one file touched,
  for examples/hello and tests/crates/with_cc.
- registry: on a second, empty dockerd over tcp://, the time to a ready builder pulled from
  a loopback registry vs built from the inputs (one run of each: a build takes minutes).
- build: native ``cargo build`` vs ``invoke build`` of the same crate (warm image), cold and
  after touching one source file; the no-change ``invoke build`` and the cached ``invoke
  smoke`` (its verdict cached) vs ``invoke --list``, all three interleaved.
"""

from __future__ import annotations

import hashlib
import http.server
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tasks import profile as tp  # noqa: E402
from tasks.builder import stages  # noqa: E402
from tasks.builder.docker_client import connect  # noqa: E402
from tasks.inputs import lockfile  # noqa: E402
from tasks.store import Store, sha256_file  # noqa: E402

Row = tuple[str, str, str, str]


LAST_OUTPUT: list[str] = []


def run(args: list[str], env: dict[str, str] | None = None, cwd: Path = ROOT) -> float:
    """Run a command to completion (it must succeed); return wall seconds."""
    start = time.perf_counter()
    done = subprocess.run(args, cwd=cwd, env={**os.environ, **(env or {})}, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"bench: {' '.join(args)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    LAST_OUTPUT[:] = done.stdout.splitlines()
    return elapsed


def stage_times() -> str:
    """'rust 33 s, builder 9 s' from the last run's "Built stage X in Ns" lines."""
    parts = [f"{ln.split()[2]} {ln.split()[4]}" for ln in LAST_OUTPUT if ln.startswith("Built stage")]
    return ", ".join(parts) or "none"


def invoke(*args: str) -> list[str]:
    return [sys.executable, "-m", "invoke", *args]


def interleave(reps: int, **cmds: Callable[[], float]) -> dict[str, float]:
    """Run each measurement ``reps`` times, interleaved; the median of each."""
    samples: dict[str, list[float]] = {k: [] for k in cmds}
    for _ in range(reps):
        for name, fn in cmds.items():
            samples[name].append(fn())
    return {k: statistics.median(v) for k, v in samples.items()}


def table(title: str, rows: list[Row]) -> None:
    print(f"\n### {title}\n")
    print("| measurement | value | baseline | ratio |")
    print("| --- | --- | --- | --- |")
    for r in rows:
        print(f"| {' | '.join(r)} |")
    sys.stdout.flush()


# ------------------------------------------------------------------ inputs


class _SendfileHandler(http.server.BaseHTTPRequestHandler):
    """GET of one file with sendfile(2), so the server is never the bottleneck."""

    path_on_disk: Path

    def do_GET(self) -> None:  # noqa: N802
        size = self.path_on_disk.stat().st_size
        self.send_response(200)
        self.send_header("Content-Length", str(size))
        self.end_headers()
        with self.path_on_disk.open("rb") as f:
            self.request.sendfile(f)

    def log_message(self, *args: object) -> None:
        pass


def bench_inputs(work: Path) -> list[Row]:
    big = work / "big.bin"
    h = hashlib.sha256()
    with big.open("wb") as f:
        for _ in range(4096):  # 4 GiB, so invoke's start-up (~0.35 s) weighs little
            block = os.urandom(1 << 20)
            h.update(block)
            f.write(block)
    handler = type("H", (_SendfileHandler,), {"path_on_disk": big})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/big.bin"
    lock = work / "lock.toml"
    lock.write_text(
        f'schema = 1\n[target]\nname = "bench"\nglibc = "2.18"\n[base]\nimage = "x/y:1"\nid = "sha256:{"0" * 64}"\n'
        f'[[artifact]]\nname = "big"\nurl = "{url}"\nsha256 = "{h.hexdigest()}"\n'
    )
    size_mb = big.stat().st_size / 1e6
    counter = iter(range(1000))

    def ours() -> float:
        cache = work / f"cache{next(counter)}"
        t = run(invoke("download", "--lock", str(lock)), {"INVOKE_COMPATBUILD_CACHE": str(cache)})
        shutil.rmtree(cache)
        return t

    def curl() -> float:
        t = run(["curl", "-sS", "-o", str(work / "curl.out"), url])
        (work / "curl.out").unlink()
        return t

    speed = interleave(3, ours=ours, curl=curl)
    cached = {"INVOKE_COMPATBUILD_CACHE": str(work / "warm")}
    run(invoke("download", "--lock", str(lock)), cached)
    run(invoke("verify", "--lock", str(lock)), cached)
    noop = interleave(
        10,
        download=lambda: run(invoke("download", "--lock", str(lock)), cached),
        verify=lambda: run(invoke("verify", "--lock", str(lock)), cached),
        both=lambda: run(invoke("download", "--lock", str(lock), "verify", "--lock", str(lock)), cached),
        listing=lambda: run(invoke("--list")),
    )
    server.shutdown()
    ours_mbs, curl_mbs = size_mb / speed["ours"], size_mb / speed["curl"]
    base = f"{noop['listing']:.2f} s"
    return [
        ("`invoke download`, 4 GiB from loopback (fresh cache)", f"{ours_mbs:.0f} MB/s", f"curl {curl_mbs:.0f} MB/s",
         f"{ours_mbs / curl_mbs:.2f}x curl"),
        ("`invoke download`, all cached", f"{noop['download']:.2f} s", base,
         f"{noop['download'] / noop['listing']:.2f}x `--list`"),
        ("`invoke verify`, all verified", f"{noop['verify']:.2f} s", base,
         f"{noop['verify'] / noop['listing']:.2f}x `--list`"),
        ("`invoke download verify` (one process)", f"{noop['both']:.2f} s", base,
         f"{noop['both'] / noop['listing']:.2f}x `--list`"),
    ]


# ------------------------------------------------------------------ image


def bench_image(work: Path) -> list[Row]:
    cache = Path(os.environ.get("COMPATBUILD_BENCH_CACHE", str(work / "cache")))
    env = {"INVOKE_COMPATBUILD_CACHE": str(cache)}
    lock = tp.prepare_profile(work / "profile", cache=tp.default_cache_dir())
    dk = connect()
    plans = stages.plan(lockfile.load(lock), Store(cache), "builder")
    for p in reversed(plans):  # cold: remove this lockfile's stage images (the base stays)
        dk.remove_image(p.tag)
    cold = run(invoke("image", "--no-cache", "--lock", str(lock)), env)
    cold_stages = stage_times()
    warm = statistics.median(run(invoke("image", "--lock", str(lock)), env) for _ in range(5))
    listing = statistics.median(run(invoke("--list")) for _ in range(5))
    # The same real toolchain packed under another version name: a new Rust input.
    version = f"1.95.0-bench{int(time.time())}"  # a Rust input never built before
    rust = tp.make_rust_installer(work / "rust2", version=version, cache=work / "rustcache")
    text = lock.read_text()
    old = lockfile.load(lock).artifact("rust")
    variant = work / "variant.toml"
    variant.write_text(text.replace(old.url, rust.as_uri()).replace(old.sha256, sha256_file(rust)))
    rebuild = run(invoke("image", "--no-cache", "--lock", str(variant)), env)
    rebuild_stages = stage_times()
    return [
        (f"`invoke image`, cold (built: {cold_stages})", f"{cold:.0f} s", "", "1.00"),
        ("`invoke image`, nothing changed", f"{warm:.2f} s", f"`--list` {listing:.2f} s",
         f"{warm / cold:.3f} of cold; {warm / listing:.2f}x `--list`"),
        (f"`invoke image`, only the Rust input changed (built: {rebuild_stages})", f"{rebuild:.0f} s",
         f"cold {cold:.0f} s",
         f"{rebuild / cold:.2f} of cold"),
    ]


# ------------------------------------------------------------------ build


def bench_build(work: Path) -> list[Row]:
    crate_src = ROOT / "bench" / "crates" / "plugin"
    crate = work / "plugin"
    shutil.copytree(crate_src, crate, ignore=shutil.ignore_patterns("target"))
    lock = tp.prepare_profile(work / "profile", cache=tp.default_cache_dir())
    cache = Path(os.environ.get("COMPATBUILD_BENCH_CACHE", str(work / "cache")))
    env = {"INVOKE_COMPATBUILD_CACHE": str(cache), "INVOKE_COMPATBUILD_OUT": str(work / "out")}
    build = invoke("build", "--lock", str(lock), "--crate", str(crate))
    run(build, env)  # images and registry warm
    native_target = work / "native-target"
    native = ["cargo", "build", "--release", "--target-dir", str(native_target)]
    run(native, cwd=crate)
    lib = crate / "src" / "lib.rs"

    def wipe_and(cmd: list[str], extra: dict[str, str] | None, cwd: Path, where: Path) -> float:
        shutil.rmtree(where, ignore_errors=True)
        return run(cmd, extra, cwd)

    target_name = lockfile.load(lock).target.name
    ours_target = next((cache / "targets" / target_name).glob("plugin-*"))  # keyed by target
    cold = interleave(
        3,
        native=lambda: wipe_and(native, None, crate, native_target),
        ours=lambda: wipe_and(build, env, ROOT, ours_target),
    )

    def touched(cmd: list[str], extra: dict[str, str] | None, cwd: Path) -> float:
        lib.touch()
        return run(cmd, extra, cwd)

    inc = interleave(5, native=lambda: touched(native, None, crate), ours=lambda: touched(build, env, ROOT))
    smoke = invoke("smoke", "--lock", str(lock))
    run(build, env)
    run(smoke, env)  # the verdict of this library on this image is now cached
    chain = interleave(7, noop=lambda: run(build, env), smoke=lambda: run(smoke, env),
                       listing=lambda: run(invoke("--list")))
    noop = chain["noop"]  # nothing to compile: the fixed cost
    return [
        ("`invoke build` plugin, nothing changed (fixed cost)", f"{noop:.2f} s", f"`--list` {chain['listing']:.2f} s",
         f"{noop / chain['listing']:.2f}x `--list`, +{noop - chain['listing']:.2f} s"),
        ("`invoke build` plugin, cold target", f"{cold['ours']:.2f} s", f"native cargo {cold['native']:.2f} s",
         f"{cold['ours'] / cold['native']:.2f}x native"),
        ("`invoke build` plugin, one file touched", f"{inc['ours']:.2f} s", f"native cargo {inc['native']:.2f} s",
         f"{inc['ours'] / inc['native']:.2f}x native"),
        ("`invoke smoke`, everything cached", f"{chain['smoke']:.2f} s", f"`--list` {chain['listing']:.2f} s",
         f"{chain['smoke'] / chain['listing']:.2f}x `--list`"),
    ]


# ------------------------------------------------------------------ linkers


def _regzip(src: Path, dest: Path) -> Path:
    """The same tar under a new gzip header (mtime): new bytes, so new stage tags, same content."""
    import gzip

    with gzip.open(src, "rb") as inp, gzip.GzipFile(dest, "wb", compresslevel=1, mtime=int(time.time())) as out:
        shutil.copyfileobj(inp, out, 1 << 20)
    return dest


def bench_linkers(work: Path) -> list[Row]:
    """Each linker strategy from a cold image (only base and rpms shared) to a built plugin,
    a warm rebuild after touching one file, and the weak-version fix-up's cost per library.

    Non-destructive: make and rust get new bytes (re-gzipped), so every stage above rpms
    gets a new tag and builds cold with --no-cache; those images are removed afterwards.
    """
    from tasks.audit.fixup import fix_weak_needs

    crate = work / "plugin"
    shutil.copytree(ROOT / "bench" / "crates" / "plugin", crate, ignore=shutil.ignore_patterns("target"))
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
            image = run(invoke("image", "--no-cache", "--lock", str(variant), "--linker", linker), env)
            built = stage_times()
            build = invoke("build", "--lock", str(variant), "--linker", linker, "--crate", str(crate))
            builds[linker] = (build, env)
            first = run(build, env)  # includes its image's own `cargo fetch`
            results[linker] = (image, built, first, 0.0)

        def touched(linker: str) -> float:
            (crate / "src" / "lib.rs").touch()
            return run(*builds[linker])

        warm = interleave(5, **{linker.replace("-", "_"): (lambda ln=linker: touched(ln)) for linker in builds})
        for linker in builds:
            image, built, first, _ = results[linker]
            results[linker] = (image, built, first, warm[linker.replace("-", "_")])
        env = {"INVOKE_COMPATBUILD_CACHE": str(cache), "INVOKE_COMPATBUILD_OUT": str(work / "out-unfixed")}
        (crate / "src" / "lib.rs").touch()
        unfixed_build = run(invoke("build", "--lock", str(variant), "--crate", str(crate), "--no-fix-weak"), env)
    finally:
        for tag in sorted(made, reverse=True):
            dk.remove_image(tag)
    rows: list[Row] = []
    for linker, (image, built, first, warm) in results.items():
        rows.append((f"linker `{linker}`: `invoke image`, cold (built: {built})", f"{image:.0f} s", "", ""))
        rows.append((f"linker `{linker}`: first `invoke build` of the plugin", f"{first:.1f} s", "", ""))
        rows.append((f"linker `{linker}`: `invoke build`, one file touched", f"{warm:.2f} s", "", ""))
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
    again = statistics.median(_timed(lambda: fix_weak_needs(work / "fix-0.so")) for _ in range(9))
    fix = statistics.median(times)
    rows.append((f"weak-version fix-up, one library ({lib.stat().st_size / 1e6:.1f} MB)", f"{fix * 1000:.0f} ms",
                 f"`invoke build` {unfixed_build:.2f} s", f"{fix / unfixed_build:.3f} of a build"))
    rows.append(("weak-version fix-up, already fixed (reads only)", f"{again * 1000:.0f} ms", "", ""))
    return rows


# ------------------------------------------------------------------ backends


def bench_backends(work: Path) -> list[Row]:
    """native cargo, the builder image (rust-lld, test profile) and zig (centos7, glibc 2.17),
    cold (target dir and zig's caches wiped) and warm (one file touched), for the example and
    a crate with C code; interleaved, medians. Images, registry and zig install are warm first."""
    lock = tp.prepare_profile(work / "profile", cache=tp.default_cache_dir())
    cache = Path(os.environ.get("COMPATBUILD_BENCH_CACHE", str(tp.default_cache_dir() / "store")))
    env = {"INVOKE_COMPATBUILD_CACHE": str(cache), "INVOKE_COMPATBUILD_OUT": str(work / "out")}
    crates = {"hello": ROOT / "examples" / "hello", "with_cc": ROOT / "tests" / "crates" / "with_cc"}
    cold: dict[str, Callable[[], float]] = {}
    warm: dict[str, Callable[[], float]] = {}
    for name, src in crates.items():
        crate = work / name
        shutil.copytree(src, crate, ignore=shutil.ignore_patterns("target"))
        source = next((crate / "src").glob("lib.rs"))
        native_target = work / f"native-{name}"
        commands = {
            "native": (["cargo", "build", "--release", "--quiet", "--target-dir", str(native_target)], crate, None),
            "image": (invoke("build", "--lock", str(lock), "--linker", "rust-lld", "--crate", str(crate)), ROOT, env),
            "zig": (invoke("build", "--backend", "zig", "--target", "centos7", "--crate", str(crate)), ROOT, env),
        }
        for cmd, cwd, extra in commands.values():
            run(cmd, extra, cwd)  # warm: images, registry, zig install; and creates the target dirs
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
                return run(cmd, extra, cwd)

            def touched(cmd: list[str] = cmd, cwd: Path = cwd, extra: dict[str, str] | None = extra,
                        source: Path = source) -> float:
                source.touch()
                return run(cmd, extra, cwd)

            cold[f"{name}/{backend}"] = wiped
            warm[f"{name}/{backend}"] = touched
    cold_t = interleave(3, **cold)
    warm_t = interleave(5, **warm)
    proves = {"native": "nothing about an old glibc (links this machine's 2.36)",
              "image": "built against the target's own glibc; audit; loads in the target image",
              "zig": "zig's 2.17 stubs; audit at 2.17; loads on 2.31/2.36 sysroots (smoke --matrix)"}
    rows: list[Row] = []
    for name in crates:
        for backend in ("native", "image", "zig"):
            key = f"{name}/{backend}"
            rows.append((f"{name}, {backend}: cold / one file touched", f"{cold_t[key]:.2f} s / {warm_t[key]:.2f} s",
                         f"native {cold_t[name + '/native']:.2f} s / {warm_t[name + '/native']:.2f} s",
                         f"{cold_t[key] / cold_t[name + '/native']:.2f}x / "
                         f"+{warm_t[key] - warm_t[name + '/native']:.2f} s; {proves[backend]}"))
    return rows


# ------------------------------------------------------------------ registry


def bench_registry(work: Path) -> list[Row]:
    """Time to a ready builder (builder + smoke stages) on a daemon that has none of the images:
    pulled from a registry vs built, on a second dockerd over tcp:// on loopback, one run each."""
    import docker.client

    from tasks.builder.docker_client import Docker
    from tasks.profile.dockerd import running_dockerd
    from tasks.profile.registryd import running_registry

    dk = connect()
    cache = tp.default_cache_dir()
    root = work / "profile"
    lock_path = tp.prepare_profile(root, cache=cache, store=Store(cache / "store"), dk=dk)
    env = {"INVOKE_COMPATBUILD_CACHE": str(cache / "store")}
    run(invoke("image", "--lock", str(lock_path)), env)  # the images exist on this machine's daemon
    base_id = lockfile.load(lock_path).base.id or ""
    (work / "registry").mkdir()
    (work / "dockerd").mkdir()
    with running_registry(work / "registry") as addr, running_dockerd(work / "dockerd") as host:
        repo = f"{addr}/bench/stages"
        push = run(invoke("image", "--lock", str(lock_path), "--push", repo), env)
        dk.tag(base_id, f"{repo}:base")
        dk.push(f"{repo}:base")
        dk.remove_image(f"{repo}:base")
        remote = Docker(docker.client.DockerClient(base_url=host, timeout=600))
        there = {**env, "DOCKER_HOST": host}
        pulled = run(invoke("image", "--lock", str(lock_path), "--pull", repo), there)
        for img in remote.client.images.list():  # empty the second daemon again (it is ours)
            remote.client.images.remove(img.id, force=True)
        remote.client.images.prune(filters={"dangling": False})
        start = time.perf_counter()
        remote.pull(f"{repo}:base")
        base = time.perf_counter() - start
        built = run(invoke("image", "--lock", str(lock_path)), there)
        stages_built = stage_times()
        remote.client.close()
    return [
        ("`invoke image --push` of builder + smoke stages to a loopback registry", f"{push:.0f} s", "", ""),
        ("empty daemon: `invoke image --pull` (builder + smoke ready)", f"{pulled:.0f} s",
         f"build {built:.0f} s", f"{pulled / built:.2f}x build"),
        ("empty daemon: `invoke image`, building every stage", f"{built:.0f} s ({stages_built})",
         f"+ base pull {base:.0f} s", ""),
    ]


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main(argv: list[str]) -> None:
    which = argv or ["inputs", "image", "build", "linkers", "backends", "registry"]
    benches = {"inputs": ("Trusted inputs", bench_inputs), "image": ("Builder image (test profile)", bench_image),
               "build": ("build and smoke (test profile, warm image)", bench_build),
               "linkers": ("Linker strategies (test profile)", bench_linkers),
               "backends": ("Backends: native, builder image, zig", bench_backends),
               "registry": ("Stage images through a registry (test profile, second daemon)", bench_registry)}
    unknown = [w for w in which if w not in benches]
    if unknown:
        raise SystemExit(f"bench: unknown benchmark {', '.join(unknown)} (have: {', '.join(benches)})")
    print(f"compatbuild benchmarks, {time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores; medians, one run")
    for name in which:
        title, fn = benches[name]
        with tempfile.TemporaryDirectory(prefix=f"bench-{name}-") as tmp:
            table(title, fn(Path(tmp)))


if __name__ == "__main__":
    main(sys.argv[1:])
