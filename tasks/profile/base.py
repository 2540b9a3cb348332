"""Test-profile base image: Debian bullseye (glibc 2.31) from debootstrap, imported into Docker.

:func:`build_base_image` debootstraps a minbase root filesystem with a C/C++ toolchain, the
real host programs a plugin's smoke runs (python3, lua5.1, sqlite3) and clang-11/lld-11 for
the llvm stage, slims it, caches it as a tarball (written through
:func:`tasks.atomic.ensure_file`) and imports it with
:meth:`tasks.builder.docker_client.Docker.import_image`, with the image's PATH and a label
keyed by its inputs. It does nothing, silently, when the tag exists.

The tag follows the cache (:func:`base_tag_for`): two profiles made in two caches debootstrap
two root filesystems (their bytes differ), so each gets its own tag, and neither lockfile
ever pins an image id that its tag no longer names.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from tasks import proc
from tasks.atomic import ensure_file, lock_for
from tasks.builder.docker_client import Docker, connect
from tasks.errors import ProfileError
from tasks.profile.sources import DEBIAN_MIRROR

BASE_REPO = "compatbuild-test"
BASE_PACKAGES = ("gcc", "g++", "libc6-dev", "make", "tar", "gzip", "xz-utils", "ca-certificates")
LLVM_PACKAGES = ("clang-11", "lld-11")
# the real host programs `smoke --host` runs (python3 imports, lua5.1 requires, sqlite3 .loads) and
# the host libraries `--host-lib` preloads (libpython3.9.so.1.0, liblua5.1.so.0, libsqlite3.so.0)
HOST_PACKAGES = ("python3", "libpython3.9", "lua5.1", "liblua5.1-0", "sqlite3", "libsqlite3-0")
IMAGE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEBOOTSTRAP_DEADLINE = 3600.0  # seconds: a slow mirror, not a hung one
# debootstrap's phase lines ("I: Retrieving Packages", "I: Unpacking required packages...")
_PHASE = re.compile(r"^I: (?:.*\b(?:packages|Packages|(?:In)?Release|base system)\b|Base system installed)")


def image_id(dk: Docker, tag: str) -> str | None:
    """The id (sha256:...) of the local image ``tag``, or None."""
    image = dk.image(tag)
    return None if image is None else str(image.id)


def base_packages(with_llvm: bool = True) -> tuple[str, ...]:
    return BASE_PACKAGES + HOST_PACKAGES + (LLVM_PACKAGES if with_llvm else ())


def _rootfs_key(suite: str, mirror: str, packages: tuple[str, ...]) -> str:
    return hashlib.sha256("\n".join([suite, mirror, "minbase", *packages]).encode()).hexdigest()[:16]


def base_tag_for(workdir: Path, *, suite: str = "bullseye", mirror: str = DEBIAN_MIRROR,
                 with_llvm: bool = True) -> str:
    """The base image's tag for the root filesystem made in ``workdir``: its inputs and its cache."""
    key = _rootfs_key(suite, mirror, base_packages(with_llvm))
    where = hashlib.sha256(str(Path(workdir).resolve()).encode()).hexdigest()[:8]
    return f"{BASE_REPO}/{suite}:{key[:8]}-{where}"


def build_base_image(
    *,
    tag: str = "",
    workdir: Path,
    suite: str = "bullseye",
    mirror: str = DEBIAN_MIRROR,
    with_llvm: bool = True,
    dk: Docker | None = None,
) -> str:
    """Import a debootstrapped Debian ``suite`` as image ``tag``; return its id (sha256:...).

    ``tag`` defaults to :func:`base_tag_for` ``workdir``. Does nothing when ``tag`` exists.
    The root filesystem tarball is cached in ``workdir``,
    so a rebuild after ``docker rmi`` only re-imports it. ``with_llvm`` adds clang-11 and
    lld-11, which the test profile's llvm stage installs as clang, clang++ and ld.lld.
    ``dk`` defaults to a new :func:`~tasks.builder.docker_client.connect`.
    """
    dk = dk or connect()
    tag = tag or base_tag_for(workdir, suite=suite, mirror=mirror, with_llvm=with_llvm)
    if found := image_id(dk, tag):
        return found
    packages = base_packages(with_llvm)
    key = _rootfs_key(suite, mirror, packages)
    with lock_for(workdir / f"{suite}-{key}.import"):
        if found := image_id(dk, tag):
            return found
        rootfs_tar = _rootfs_tarball(workdir / f"debian-{suite}-{key}.rootfs.tar", suite, mirror, packages)
        print(f"Importing {rootfs_tar.name} as {tag}")
        changes = [
            f"ENV PATH={IMAGE_PATH}",
            "ENV LANG=C.UTF-8",
            'CMD ["/bin/bash"]',
            f"LABEL org.compatbuild.testprofile.rootfs={key}",
        ]
        return dk.import_image(rootfs_tar, tag, changes=changes)


def _rootfs_tarball(dest: Path, suite: str, mirror: str, packages: tuple[str, ...]) -> Path:
    if dest.is_file():
        print(f"Using cached {dest}")
        return dest
    debootstrap = shutil.which("debootstrap") or shutil.which("debootstrap", path="/usr/sbin:/sbin")
    if debootstrap is None:
        raise ProfileError("debootstrap not found; install it (apt-get install debootstrap)")
    log = dest.with_suffix(".debootstrap.log")

    def bootstrap(part: Path) -> None:
        rootfs = Path(tempfile.mkdtemp(prefix="rootfs-", dir=dest.parent))
        try:
            print(f"Bootstrapping Debian {suite} with {', '.join(packages)} (minutes; the full log: {log})")
            with log.open("w") as out:
                def progress(line: str) -> None:
                    out.write(line + "\n")
                    if _PHASE.match(line):  # its phases, not a line per package
                        print(f"  debootstrap: {line.removeprefix('I: ')}", flush=True)

                status, stdout, _ = proc.stream(
                    [debootstrap, "--variant=minbase", f"--include={','.join(packages)}", suite, str(rootfs), mirror],
                    what=f"debootstrap {suite}", timeout=DEBOOTSTRAP_DEADLINE, on_stderr=progress, error=ProfileError,
                )
                out.write(stdout)
            if status != 0:
                raise ProfileError(f"debootstrap {suite} failed (exit {status}); see {log}")
            _slim(rootfs)
            subprocess.run(["tar", "--numeric-owner", "-C", str(rootfs), "-cf", str(part), "."], check=True)
        except subprocess.CalledProcessError as exc:
            raise ProfileError(f"packing the {suite} root filesystem failed: {exc}") from exc
        finally:
            _unmount_below(rootfs)
            shutil.rmtree(rootfs, ignore_errors=True)

    ensure_file(dest, bootstrap)
    return dest


def _slim(rootfs: Path) -> None:
    """Drop what a build image never reads: .debs, apt lists, docs, man pages, translations."""
    for sub in (
        "var/cache/apt/archives",
        "var/lib/apt/lists",
        "usr/share/doc",
        "usr/share/man",
        "usr/share/info",
        "usr/share/locale",
    ):
        for child in (rootfs / sub).glob("*"):
            if child.is_dir() and not child.is_symlink():
                if child.name != "partial":
                    shutil.rmtree(child)
            elif child.name != "lock":
                child.unlink()


def _unmount_below(path: Path) -> None:
    """Unmount anything a failed debootstrap left mounted under ``path`` (before rmtree)."""
    prefix = str(path) + "/"
    mounts = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    for mount in sorted((m for m in mounts if m.startswith(prefix)), reverse=True):
        subprocess.run(["umount", "-l", mount], check=False)
