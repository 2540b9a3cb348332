"""The test profile as a whole: make every input, then write the lockfile that pins them.

:func:`prepare_profile` makes the fixtures, the Rust installer and (optionally) the base
image, keeping the debootstrap tarball and Rust packs in :func:`default_cache_dir` and
downloads in a :class:`~tasks.store.Store` (by default ``<cache>/store``, the one the
tests' pipeline uses); :func:`write_lockfile` pins them as ``file://`` artifacts and the
base image by its local image id, and carries the zig backend's two PyPI wheels as the
shipped lockfile pins them, so both backends build for the profile's one target.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

from tasks.atomic import write_atomic
from tasks.builder.docker_client import Docker
from tasks.inputs import lockfile
from tasks.inputs.lockfile import Artifact
from tasks.profile.base import base_tag_for, build_base_image
from tasks.profile.fixtures import make_cmake_tarball, make_llvm_tarballs, make_make_tarball
from tasks.profile.rust import make_rust_installer
from tasks.settings import PROJECT_ROOT
from tasks.store import Store, sha256_file

ZIG_ARTIFACTS = ("cargo-zigbuild", "ziglang")  # pinned as the shipped lockfile pins them
TARGET_NAME = "bullseye-test"
TARGET_GLIBC = "2.31"


def default_cache_dir() -> Path:
    """Where downloads, the debootstrap tarball and the packed Rust installer are kept."""
    if env := os.environ.get("COMPATBUILD_TESTPROFILE_CACHE"):
        return Path(env)
    if env := os.environ.get("COMPATBUILD_CACHE"):
        return Path(env) / "testprofile"
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "compatbuild" / "testprofile"


def _toml_str(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid TOML basic string


def write_lockfile(
    path: Path,
    *,
    base_image: str,
    base_id: str | None,
    artifacts: Iterable[tuple[str, Path]],
    target: str = TARGET_NAME,
    glibc: str = TARGET_GLIBC,
    upstream: Iterable[Artifact] = (),
) -> Path:
    """Write the profile's lockfile (schema 1): target, base image, file:// artifacts, and
    ``upstream`` artifacts pinned as the shipped lockfile pins them (the zig backend's wheels).

    A local image has no registry digest, so the base is pinned by its image ``id``.
    """
    lines = [
        "# compatbuild test profile: offline stand-ins made by tests/profile, not upstream.",
        "schema = 1",
        "",
        "[target]",
        f"name = {_toml_str(target)}",
        f"glibc = {_toml_str(glibc)}",
        "",
        "[base]",
        f"image = {_toml_str(base_image)}",
    ]
    if base_id:
        lines.append(f"id = {_toml_str(base_id)}")
    for name, file in artifacts:
        lines += [
            "",
            "[[artifact]]",
            f"name = {_toml_str(name)}",
            f"url = {_toml_str(file.resolve().as_uri())}",
            f"sha256 = {_toml_str(sha256_file(file))}",
        ]
    for a in upstream:
        lines += ["", "[[artifact]]", f"name = {_toml_str(a.name)}", f"url = {_toml_str(a.url)}",
                  f"sha256 = {_toml_str(a.sha256)}", *([f"size = {a.size}"] if a.size else [])]
    write_atomic(path, ("\n".join(lines) + "\n").encode())
    return path


def prepare_profile(
    root: Path,
    *,
    with_base_image: bool = True,
    cache: Path | None = None,
    toolchain: Path | None = None,
    base_tag: str = "",
    store: Store | None = None,
    dk: Docker | None = None,
) -> Path:
    """Make every test-profile input under ``root/inputs`` and return ``root/rsrc.lock.toml``.

    The debootstrap tarball and the packed Rust installer are kept in ``cache`` (default
    :func:`default_cache_dir`), downloads in ``store`` (default ``Store(cache / "store")``).
    Without the base image the lockfile has no base ``id``, so it does not load until one
    is added.
    """
    cache = cache or default_cache_dir()
    store = store or Store(cache / "store")
    inputs = root / "inputs"
    llvm, cfe, lld = make_llvm_tarballs(inputs)
    artifacts = [
        ("make", make_make_tarball(inputs, store)),
        ("cmake", make_cmake_tarball(inputs, store)),
        ("llvm", llvm),
        ("clang", cfe),
        ("lld", lld),
        ("rust", make_rust_installer(inputs, toolchain=toolchain, cache=cache / "rust")),
    ]
    base_tag = base_tag or base_tag_for(cache / "base")  # follows the cache: profiles side by side never clash
    base_id = build_base_image(tag=base_tag, workdir=cache / "base", dk=dk) if with_base_image else None
    shipped = lockfile.load(PROJECT_ROOT / "rsrc.lock.toml", "centos7")
    zig = [a for a in shipped.artifacts if a.name in ZIG_ARTIFACTS]  # PyPI's wheels: both backends, one target
    return write_lockfile(root / "rsrc.lock.toml", base_image=base_tag, base_id=base_id, artifacts=artifacts,
                          upstream=zig)
