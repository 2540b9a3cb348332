"""The test profile's inputs work for real in a container of its base image.

Needs a running Docker daemon, root (debootstrap), deb.debian.org and PyPI on first run;
later runs reuse the image, the cache (``COMPATBUILD_TESTPROFILE_CACHE``) and its store.
"""

from __future__ import annotations

import hashlib
import inspect
import io
import tarfile
import tomllib
from pathlib import Path
from urllib.parse import urlparse

import pytest

from tasks import errors
from tasks import profile as tp
from tasks.builder.docker_client import Docker
from tasks.errors import DockerError, HashMismatch, ProfileError
from tasks.inputs import lockfile
from tasks.inputs.lockfile import Resource
from tasks.profile import base
from tasks.settings import PROJECT_ROOT, Settings
from tasks.store import Store

pytestmark = pytest.mark.docker

RUST_COMPONENTS_ARG = "rustc,cargo,rust-std-x86_64-unknown-linux-gnu"


# ------------------------------------------------------------------ fixtures
# docker_client, profile_cache and profile come from conftest.py.


@pytest.fixture(scope="session")
def inputs(profile: Path) -> Path:
    return profile / "inputs"


@pytest.fixture(scope="session")
def profile_store(profile: Path, profile_cache: Path) -> Store:
    """The store the profile fetched its downloads into (conftest's default)."""
    return Store(profile_cache / "store")


@pytest.fixture(scope="session")
def base_image(profile: Path, docker_client: Docker) -> str:
    image_id = tp.image_id(docker_client, lockfile.load(profile / "rsrc.lock.toml").base.image)
    assert image_id is not None
    return image_id


def run_in(dk: Docker, image: str, script: str, mounts: dict[Path, str]) -> tuple[int, str]:
    """Run ``sh -ec script`` offline in ``image`` with host dirs mounted read-only (then removed)."""
    volumes = {str(host): {"bind": inside, "mode": "ro"} for host, inside in mounts.items()}
    return dk.run(image, ["sh", "-ec", script], volumes=volumes, network_disabled=True)


def run_ok(dk: Docker, image: str, script: str, mounts: dict[Path, str]) -> str:
    status, out = run_in(dk, image, script, mounts)
    assert status == 0, f"exit {status}:\n{out[-6000:]}"
    return out


def members(tarball: Path) -> list[str]:
    with tarfile.open(tarball) as tar:
        return tar.getnames()


# ------------------------------------------------------------------ base image and lockfile


def test_base_image_has_glibc_2_31_clang_11_and_path(docker_client: Docker, base_image: str) -> None:
    env = docker_client.client.images.get(base_image).attrs["Config"]["Env"]
    assert f"PATH={tp.IMAGE_PATH}" in env
    script = "ldd --version; gcc --version; clang-11 --version; ld.lld-11 --version; make --version"
    out = run_ok(docker_client, base_image, script, {})
    assert "2.31" in out.splitlines()[0]
    assert "clang version 11" in out
    assert "LLD 11" in out


def test_build_base_image_is_silent_when_the_tag_exists(
    base_image: str, profile_cache: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert tp.build_base_image(workdir=profile_cache / "base") == base_image
    assert capsys.readouterr().out == ""


def test_lockfile_loads_and_pins_every_input_by_file_url_and_sha256(profile: Path, base_image: str,
                                                                    profile_cache: Path) -> None:
    lock = lockfile.load(profile / "rsrc.lock.toml")
    assert (lock.target.name, lock.target.glibc) == ("bullseye-test", "2.31")
    want = tp.base_tag_for(profile_cache / "base")
    assert (lock.base.image, lock.base.id, lock.base.digest) == (want, base_image, None)
    made = ["make", "cmake", "llvm", "clang", "lld", "rust"]  # the stand-ins, as file:// URLs
    assert [a.name for a in lock.artifacts] == [*made, "cargo-zigbuild", "ziglang"]  # + the zig wheels, as shipped
    shipped = {a.name: a for a in lockfile.load(PROJECT_ROOT / "rsrc.lock.toml").artifacts}
    for artifact in lock.artifacts[len(made):]:
        assert (artifact.url, artifact.sha256, artifact.size) == (shipped[artifact.name].url,
                                                                   shipped[artifact.name].sha256,
                                                                   shipped[artifact.name].size)
    for artifact in lock.artifacts[:len(made)]:
        url = urlparse(artifact.url)
        assert url.scheme == "file"
        path = Path(url.path)
        assert path.parent == profile / "inputs" and artifact.filename == path.name
        assert hashlib.sha256(path.read_bytes()).hexdigest() == artifact.sha256


def test_profiles_in_two_caches_get_two_base_tags_and_one_cache_keeps_its_own(tmp_path: Path) -> None:
    a, b = tp.base_tag_for(tmp_path / "a"), tp.base_tag_for(tmp_path / "b")
    assert a != b and a == tp.base_tag_for(tmp_path / "a" / ".." / "a")
    assert a.startswith(f"{tp.BASE_REPO}/bullseye:") and tp.base_tag_for(tmp_path / "a", with_llvm=False) != a


def test_lockfile_without_base_image_has_no_base_pin(tmp_path: Path, inputs: Path) -> None:
    make = inputs / "make-4.4.1.tar.gz"
    path = tp.write_lockfile(
        tmp_path / "rsrc.lock.toml", base_image=f"{tp.BASE_REPO}/bullseye:x", base_id=None, artifacts=[("make", make)]
    )
    assert "id" not in tomllib.loads(path.read_text())["base"]


# ------------------------------------------------------------------ layouts and determinism


def test_tarballs_have_the_upstream_names_and_top_directories(inputs: Path) -> None:
    expected = {
        "make-4.4.1.tar.gz": "make-4.4.1",
        "cmake-3.29.3-linux-x86_64.tar.gz": "cmake-3.29.3-linux-x86_64",
        "llvm-5.0.2.src.tar.xz": "llvm-5.0.2.src",
        "cfe-5.0.2.src.tar.xz": "cfe-5.0.2.src",
        "lld-5.0.2.src.tar.xz": "lld-5.0.2.src",
    }
    for name, top in expected.items():
        names = members(inputs / name)
        assert {n.split("/")[0] for n in names} == {top}, name
    assert "make-4.4.1/configure" in members(inputs / "make-4.4.1.tar.gz")
    cmake = members(inputs / "cmake-3.29.3-linux-x86_64.tar.gz")
    assert "cmake-3.29.3-linux-x86_64/bin/cmake" in cmake
    assert "cmake-3.29.3-linux-x86_64/share/cmake-3.29/Modules/CMakeDetermineCCompiler.cmake" in cmake


def test_rust_installer_has_the_combined_installer_layout_without_docs(inputs: Path) -> None:
    [tarball] = inputs.glob("rust-*-x86_64-unknown-linux-gnu.tar.gz")
    top = tarball.name.removesuffix(".tar.gz")
    with tarfile.open(tarball) as tar:
        names = set(tar.getnames())

        def read(rel: str) -> str:
            f = tar.extractfile(f"{top}/{rel}")
            assert f is not None
            return f.read().decode()

        assert read("components").split() == list(tp.RUST_COMPONENTS)
        assert read("rust-installer-version") == "3\n"
        assert tar.getmember(f"{top}/install.sh").mode == 0o755
        for comp in tp.RUST_COMPONENTS:
            for entry in read(f"{comp}/manifest.in").splitlines():
                kind, _, rel = entry.partition(":")
                assert kind in ("file", "dir") and f"{top}/{comp}/{rel}" in names, entry
    assert f"{top}/rustc/bin/rustc" in names and f"{top}/cargo/bin/cargo" in names
    assert not [n for n in names if "/share/" in n or "clippy" in n or "rustfmt" in n]


def test_fixture_tarballs_are_byte_for_byte_reproducible(
    tmp_path: Path, inputs: Path, profile_store: Store
) -> None:
    again = [
        *tp.make_llvm_tarballs(tmp_path),
        tp.make_make_tarball(tmp_path, profile_store),
        tp.make_cmake_tarball(tmp_path, profile_store),
    ]
    for path in again:
        assert path.read_bytes() == (inputs / path.name).read_bytes(), path.name
    first = tp.make_small_rust_installer(tmp_path / "a", "1.83.0")
    assert first.read_bytes() == tp.make_small_rust_installer(tmp_path / "b", "1.83.0").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["a", "b", *(p.name for p in again)])


def test_llvm_stand_ins_pack_exactly_the_files_under_files(inputs: Path) -> None:
    for name in tp.LLVM_TREES:
        top = f"{name}-{tp.LLVM_VERSION}.src"
        with tarfile.open(inputs / f"{top}.tar.xz") as tar:
            packed = {}
            for m in tar.getmembers():
                if m.isfile():
                    f = tar.extractfile(m)
                    assert f is not None and m.mode == 0o644
                    packed[m.name.removeprefix(f"{top}/")] = f.read()
        assert packed == tp.tree(name) and "CMakeLists.txt" in packed, name


def test_installers_carry_the_scripts_under_files(inputs: Path, tmp_path: Path) -> None:
    [tarball] = inputs.glob("rust-*-x86_64-unknown-linux-gnu.tar.gz")
    small = tp.make_small_rust_installer(tmp_path, "1.99.0")
    for path in (tarball, small):
        top = path.name.removesuffix(".tar.gz")
        with tarfile.open(path) as tar:
            f = tar.extractfile(f"{top}/install.sh")
            assert f is not None and f.read() == (tp.FILES / "rust" / "install.sh").read_bytes()
    with tarfile.open(small) as tar:
        f = tar.extractfile("rust-1.99.0-x86_64-unknown-linux-gnu/rustc/bin/rustc")
        assert f is not None
        assert f.read().decode() == tp.text("rust/stub.sh").replace("@TOOL@", "rustc").replace("@VERSION@", "1.99.0")
    assert tp.stub_script("cargo", "1.99.0").splitlines()[-1] == 'echo "cargo 1.99.0 (compatbuild test profile stub)"'


def test_profile_downloads_are_store_entries_under_their_pins_and_cached_silently(
    profile_store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    for resource in (tp.MAKE_ORIG, tp.MAKE_DEBIAN, tp.CMAKE_WHEEL):
        assert resource.sha256 is not None
        assert tp.fetch(resource, profile_store) == profile_store.path(resource.sha256)
        assert hashlib.sha256(profile_store.path(resource.sha256).read_bytes()).hexdigest() == resource.sha256
    assert capsys.readouterr().out == ""


def test_profile_fetch_quarantines_a_download_whose_sha256_differs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    payload = tmp_path / "payload.tar.xz"
    payload.write_bytes(b"not what was pinned")
    store = Store(tmp_path / "cache")
    resource = Resource("test profile payload", payload.as_uri(), payload.name, "0" * 64)
    with pytest.raises(HashMismatch, match="expected 0{64}, got"):
        tp.fetch(resource, store)
    assert "Downloading test profile payload" in capsys.readouterr().out
    assert not [p for p in (store.root / "sha256").rglob("*") if p.is_file()]
    assert [p.read_bytes() for p in (store.root / "quarantine").iterdir()] == [b"not what was pinned"]
    assert not list((store.root / "partial").iterdir())


def test_a_missing_debootstrap_is_one_profile_error_with_its_own_exit_code(
    docker_client: Docker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(base.shutil, "which", lambda *_a, **_k: None)
    tag = "compatbuild-test/never-built:no-debootstrap"
    with pytest.raises(ProfileError) as caught:
        tp.build_base_image(tag=tag, workdir=tmp_path, dk=docker_client)
    assert str(caught.value) == "debootstrap not found; install it (apt-get install debootstrap)"
    others = {
        cls.exit_code
        for _, cls in inspect.getmembers(errors, inspect.isclass)
        if issubclass(cls, errors.CompatError) and cls is not ProfileError
    }
    assert ProfileError.exit_code not in others
    assert tp.image_id(docker_client, tag) is None
    assert not [p for p in tmp_path.iterdir() if not p.name.endswith(".lock")]


def test_import_image_makes_a_tagged_image_with_the_changes_applied(docker_client: Docker, tmp_path: Path) -> None:
    rootfs = tmp_path / "rootfs.tar"
    with tarfile.open(rootfs, "w") as tar:
        info = tarfile.TarInfo("etc/compatbuild-profile")
        data = b"imported\n"
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    tag = "compatbuild-test/import-check:latest"
    try:
        image_id = docker_client.import_image(
            rootfs, tag, changes=["ENV PROFILE_CHECK=yes", "LABEL org.compatbuild.testprofile.check=1"]
        )
        image = docker_client.image(tag)
        assert image is not None and image.id == image_id
        assert "PROFILE_CHECK=yes" in image.attrs["Config"]["Env"]
        assert image.labels["org.compatbuild.testprofile.check"] == "1"
        garbage = tmp_path / "garbage.tar"
        garbage.write_bytes(b"this is not a tar archive" * 100)
        with pytest.raises(DockerError, match=r"^docker: cannot import .*garbage.tar as "):
            docker_client.import_image(garbage, "compatbuild-test/import-garbage:latest")
    finally:
        docker_client.remove_image(tag)
        docker_client.remove_image("compatbuild-test/import-garbage:latest")


# ------------------------------------------------------------------ inputs working in the base image
# Each script does what the stage Dockerfile in docker/<stage>/ does with the input.


def test_make_tarball_configures_builds_and_installs_a_working_make(
    docker_client: Docker, base_image: str, inputs: Path
) -> None:
    out = run_ok(
        docker_client,
        base_image,
        r"""
        mkdir /tmp/make && tar -xzf /in/make-4.4.1.tar.gz -C /tmp/make --strip-components=1
        cd /tmp/make
        ./configure --prefix=/usr/local --disable-nls > /dev/null
        make -j"$(nproc)" > /dev/null && make install > /dev/null
        hash -r; make --version
        mkdir /tmp/t && printf 'all: out\n\tcat out\n' > /tmp/t/Makefile
        printf 'out:\n\techo built-by-$(MAKE_VERSION) > $@\n' >> /tmp/t/Makefile
        make -C /tmp/t
        """,
        {inputs: "/in"},
    )
    assert "GNU Make 4.4.1" in out
    assert "built-by-4.4.1" in out


def test_cmake_tarball_runs_after_strip_components_into_usr_local(
    docker_client: Docker, base_image: str, inputs: Path
) -> None:
    out = run_ok(
        docker_client,
        base_image,
        """
        tar -xzf /in/cmake-3.29.3-linux-x86_64.tar.gz -C /usr/local --strip-components=1 --no-same-owner
        cmake --version
        """,
        {inputs: "/in"},
    )
    assert "cmake version 3.29.3" in out


def test_llvm_stand_in_builds_like_llvm_and_installs_working_clang_and_lld(
    docker_client: Docker, base_image: str, inputs: Path
) -> None:
    out = run_ok(
        docker_client,
        base_image,
        r"""
        tar -xzf /in/cmake-3.29.3-linux-x86_64.tar.gz -C /usr/local --strip-components=1
        mkdir -p /tmp/src/llvm-src/tools/clang /tmp/src/llvm-src/tools/lld /tmp/src/build
        cd /tmp/src
        tar -xJf /in/llvm-5.0.2.src.tar.xz -C llvm-src --strip-components=1
        tar -xJf /in/cfe-5.0.2.src.tar.xz -C llvm-src/tools/clang --strip-components=1
        tar -xJf /in/lld-5.0.2.src.tar.xz -C llvm-src/tools/lld --strip-components=1
        cd build
        cmake -G "Unix Makefiles" -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX=/usr/local \
            -DLLVM_TARGETS_TO_BUILD=X86 -DLLVM_ENABLE_ASSERTIONS=OFF -DLLVM_INCLUDE_TESTS=OFF \
            -DLLVM_ENABLE_TERMINFO=OFF -DCLANG_ENABLE_ARCMT=OFF ../llvm-src
        make -j"$(nproc)" && make install
        llvm-profile-version
        clang --version && clang++ --version && ld.lld --version
        printf '#include <stdio.h>\nint main(void) { puts("hello from clang"); return 0; }\n' > /tmp/h.c
        clang -fuse-ld=lld /tmp/h.c -o /tmp/h && /tmp/h
        printf '#include <iostream>\nint main() { std::cout << "hello from clang++\\n"; }\n' > /tmp/h.cc
        clang++ -fuse-ld=lld /tmp/h.cc -o /tmp/hh && /tmp/hh
        readelf -p .comment /tmp/h /tmp/hh
        """,
        {inputs: "/in"},
    )
    assert "LLVM 5.0.2 (compatbuild test profile stand-in), targets: X86" in out
    assert "clang 5.0.2 stand-in: C compiler works" in out
    assert "lld 5.0.2 stand-in: C++ compiler works" in out
    assert "Manually-specified variables were not used" in out
    assert "hello from clang\n" in out and "hello from clang++" in out
    assert out.count("Linker: LLD 11") == 2


def test_rust_installer_installs_rustc_and_cargo_that_build_a_cdylib(
    docker_client: Docker, base_image: str, inputs: Path
) -> None:
    [tarball] = inputs.glob("rust-*-x86_64-unknown-linux-gnu.tar.gz")
    # The second build links the way docker/builder/Dockerfile does: clang drives ld.lld.
    out = run_ok(
        docker_client,
        base_image,
        rf"""
        mkdir /tmp/rust && tar -xzf /in/{tarball.name} -C /tmp/rust --strip-components=1
        cd /tmp/rust
        ./install.sh --prefix=/usr/local --disable-ldconfig --components={RUST_COMPONENTS_ARG}
        rustc --version && cargo --version
        export CARGO_HOME=/tmp/cargo-home
        mkdir -p /tmp/hello/src && cd /tmp/hello
        printf '[package]\nname = "hello"\nversion = "0.1.0"\nedition = "2021"\n' > Cargo.toml
        printf '[lib]\ncrate-type = ["cdylib"]\n' >> Cargo.toml
        printf '#[no_mangle]\npub extern "C" fn hello_add(a: i32, b: i32) -> i32 {{ a + b }}\n' > src/lib.rs
        cargo build --release --offline
        nm -D --defined-only target/release/libhello.so
        export CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER=clang-11
        export RUSTFLAGS="-C linker-features=-lld -C link-arg=-fuse-ld=lld"
        cargo build --release --offline --target-dir /tmp/clang-target
        readelf -p .comment /tmp/clang-target/release/libhello.so
        """,
        {inputs: "/in"},
    )
    version = tp.rustc_version(tp.default_toolchain())
    assert f"rustc {version}" in out
    assert "install: installing component 'rust-std-x86_64-unknown-linux-gnu'" in out
    assert "install: /usr/local/bin/cargo" in out
    assert " T hello_add" in out
    assert "Linker: LLD 11" in out


def test_small_rust_installer_honours_components_without_and_rejects_unknowns(
    docker_client: Docker, base_image: str, tmp_path: Path
) -> None:
    tarball = tp.make_small_rust_installer(tmp_path, "1.99.0")
    top = tarball.name.removesuffix(".tar.gz")
    setup = f"cd /tmp && tar xzf /in/{tarball.name} && cd {top}\n"
    out = run_ok(
        docker_client,
        base_image,
        setup
        + f"""
        ./install.sh --prefix=/opt/a --disable-ldconfig --components={RUST_COMPONENTS_ARG}
        /opt/a/bin/rustc --version && /opt/a/bin/cargo --version
        cat /opt/a/lib/rustlib/x86_64-unknown-linux-gnu/lib/README.compatbuild /opt/a/lib/rustlib/components
        ./install.sh --prefix=/opt/b --without=cargo
        test -x /opt/b/bin/rustc && test ! -e /opt/b/bin/cargo && echo without-ok
        """,
        {tmp_path: "/in"},
    )
    assert "rustc 1.99.0 (compatbuild test profile stub)" in out
    assert "cargo 1.99.0 (compatbuild test profile stub)" in out
    assert "without-ok" in out
    status, out = run_in(
        docker_client, base_image, setup + "./install.sh --components=rustc,clippy", {tmp_path: "/in"}
    )
    assert status == 1 and "unknown component: clippy" in out
    status, out = run_in(docker_client, base_image, setup + "./install.sh --frobnicate", {tmp_path: "/in"})
    assert status == 1 and "unknown option: --frobnicate" in out


def test_the_profiles_toolchain_is_found_in_rustup_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUSTUP_HOME", str(tmp_path / "rustup"))
    assert tp.default_toolchain() == tmp_path / "rustup" / "toolchains" / "stable-x86_64-unknown-linux-gnu"
    monkeypatch.delenv("RUSTUP_HOME")
    assert tp.default_toolchain() == Path.home() / ".rustup" / "toolchains" / "stable-x86_64-unknown-linux-gnu"


def test_debootstrap_shows_its_phases_as_it_goes_and_keeps_the_whole_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = tmp_path / "debootstrap"
    fake.write_text('#!/bin/sh\nfor a; do root=$prev; prev=$a; done\nmkdir -p "$root/etc"\n'
                    'for l in "I: Retrieving InRelease" "I: Retrieving Packages" "I: Retrieving adduser 3.118" '
                    '"I: Unpacking required packages..." "I: Unpacking adduser..." '
                    '"I: Configuring required packages..." "I: Base system installed successfully."; do\n'
                    '  echo "$l" >&2; done\n')
    fake.chmod(0o755)
    monkeypatch.setattr(base.shutil, "which", lambda name, **_k: str(fake) if name == "debootstrap" else None)
    dest = tmp_path / "rootfs.tar"
    base._rootfs_tarball(dest, "bullseye", "http://deb.invalid/debian", ("gcc",))
    shown = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("  debootstrap: ")]
    assert shown == ["  debootstrap: Retrieving InRelease", "  debootstrap: Retrieving Packages",
                     "  debootstrap: Unpacking required packages...", "  debootstrap: Configuring required packages...",
                     "  debootstrap: Base system installed successfully."]
    assert "I: Unpacking adduser..." in dest.with_suffix(".debootstrap.log").read_text()  # every line kept
    assert dest.is_file()


@pytest.mark.docker
def test_both_backends_build_for_the_profiles_one_target(
    docker_client: Docker, profile_lock: Path, profile_settings: Settings, tmp_path: Path
) -> None:
    """The profile pins the zig wheels as the shipped lockfile does: zig and the image build bullseye-test."""
    import dataclasses

    from tasks import pipeline
    from tasks.dlopen.smoke import smoke_in_image

    lock = lockfile.load(profile_lock)
    assert {a.name for a in lock.artifacts} >= {"cargo-zigbuild", "ziglang"}
    hello = PROJECT_ROOT / "examples" / "hello"
    libs = []
    for backend in ("zig", "docker"):
        s = dataclasses.replace(profile_settings, out=tmp_path / backend, backend=backend)
        result = pipeline.build(docker_client if backend == "docker" else None, lock, s, hello,
                                log=lambda _: None, on_line=lambda _: None)
        assert all(a.ok for a in result.audits) and result.audits[0].target_glibc == "2.31"
        libs += result.libraries
    tag = pipeline.image(docker_client, lock, profile_settings, "smoke", log=lambda _: None, on_line=lambda _: None)
    results = smoke_in_image(docker_client, lock, libs, image=tag, log=lambda _: None, on_line=None)
    assert [r.ok for r in results] == [True, True]
