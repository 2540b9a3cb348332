"""Stage images through a registry (test profile, second daemon): on a second, empty dockerd
over tcp://, the time to a ready builder pulled from a loopback registry vs built from the
inputs (one run of each: a build takes minutes)."""

from __future__ import annotations

import time
from pathlib import Path

from bench import harness as h
from tasks import profile as tp
from tasks.builder.docker_client import connect
from tasks.inputs import lockfile
from tasks.store import Store

TITLE = "Stage images through a registry (test profile, second daemon)"
SUMMARY = "on a second, empty dockerd: a ready builder pulled from a loopback registry vs built from the inputs"


def run(work: Path) -> list[h.Row]:
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
    h.run(h.invoke("image", "--lock", str(lock_path)), env)  # the images exist on this machine's daemon
    base_id = lockfile.load(lock_path).base.id or ""
    (work / "registry").mkdir()
    (work / "dockerd").mkdir()
    with running_registry(work / "registry") as addr, running_dockerd(work / "dockerd") as host:
        repo = f"{addr}/bench/stages"
        push = h.run(h.invoke("image", "--lock", str(lock_path), "--push", repo), env)
        dk.tag(base_id, f"{repo}:base")
        dk.push(f"{repo}:base")
        dk.remove_image(f"{repo}:base")
        remote = Docker(docker.client.DockerClient(base_url=host, timeout=600))
        there = {**env, "DOCKER_HOST": host}
        pulled = h.run(h.invoke("image", "--lock", str(lock_path), "--pull", repo), there)
        for img in remote.client.images.list():  # empty the second daemon again (it is ours)
            remote.client.images.remove(img.id, force=True)
        remote.client.images.prune(filters={"dangling": False})
        start = time.perf_counter()
        remote.pull(f"{repo}:base")
        base = time.perf_counter() - start
        built, built_out = h.run_output(h.invoke("image", "--lock", str(lock_path)), there)
        stages_built = h.stage_times(built_out)
        remote.client.close()
    return [
        ("`invoke image --push` of builder + smoke stages to a loopback registry", f"{push:.0f} s", "", ""),
        ("empty daemon: `invoke image --pull` (builder + smoke ready)", f"{pulled:.0f} s",
         f"build {built:.0f} s", f"{pulled / built:.2f}x build"),
        ("empty daemon: `invoke image`, building every stage", f"{built:.0f} s ({stages_built})",
         f"+ base pull {base:.0f} s", ""),
    ]
