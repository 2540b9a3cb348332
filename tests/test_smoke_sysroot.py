"""The seed's failure, reproduced without Docker: a real old glibc, run by its own loader.

Debian bullseye's glibc 2.31 (libc6, libc6-dev, linux-libc-dev, libgcc-s1, fetched from
deb.debian.org by tests/debpool.py) is unpacked into a sysroot (the ``debs`` and
``bullseye`` fixtures of conftest.py). A cdylib that this machine's
cargo builds (glibc 2.36) loads here but not there, with the loader's own words; a C library
that needs only old symbols loads in both. The same glibc repacked as Fedora-layout RPMs
(lib64) checks make_sysroot and the harness build against that layout too.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest

from tasks.crates.smoke import compile_harness, smoke_native, smoke_sysroot, sysroot_loader
from tasks.crates.sysroot import STAMP, make_sysroot, make_sysroot_from_debs
from tasks.errors import CompatError, LockfileError, OutputError, SmokeError
from tasks.inputs.lockfile import load
from tasks.store import Store, sha256_file

ROOT = Path(__file__).resolve().parent.parent
HELLO = ROOT / "examples" / "hello"
NOT_FOUND = re.compile(r"version `GLIBC_2\.3\d' not found \(required by .*libhello\.so\)")


@pytest.fixture(scope="session")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="session")
def native_hello(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """examples/hello built by this machine's cargo, against this machine's glibc 2.36."""
    if shutil.which("cargo") is None:
        pytest.fail("needs cargo on the host (rustup)", pytrace=False)
    target = tmp_path_factory.mktemp("native-target")
    subprocess.run(
        ["cargo", "build", "--release", "--quiet", "--manifest-path", str(HELLO / "Cargo.toml")],
        env={**os.environ, "CARGO_TARGET_DIR": str(target)}, check=True,
    )
    return target / "release" / "libhello.so"


def c_library(directory: Path, name: str, body: str) -> Path:
    """A shared library built by this machine's gcc."""
    src = directory / f"{name}.c"
    src.write_text(textwrap.dedent(body))
    out = directory / f"lib{name}.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-O1", "-o", str(out), str(src)], check=True)
    return out


OLD_ONLY_C = """\
    #include <stdio.h>
    #include <stdlib.h>
    #include <string.h>
    void test(void) {
        char *p = malloc(32);
        strcpy(p, "old symbols only");
        puts(p);
        free(p);
    }
"""


@pytest.fixture(scope="session")
def old_c_lib(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return c_library(tmp_path_factory.mktemp("clib"), "oldsyms", OLD_ONLY_C)


# ----------------------------------------------------------------------------- the seed


def test_native_build_of_example_loads_on_this_machine(native_hello: Path, cache: Path) -> None:
    [result] = smoke_native([native_hello], cache=cache)
    assert result.ok and result.error is None
    assert "hello from compatbuild" in result.output
    assert "smoke: test returned" in result.output


def test_native_build_fails_on_bullseye_with_the_loaders_own_words(
    native_hello: Path, bullseye: Path, cache: Path
) -> None:
    with pytest.raises(SmokeError) as err:
        smoke_sysroot([native_hello], bullseye, cache=cache)
    message = str(err.value)
    assert NOT_FOUND.search(message), message
    assert str(bullseye / "lib/x86_64-linux-gnu/libc.so.6") in message  # the old libc said it
    assert "\n" not in message


def test_c_library_with_only_old_symbols_loads_on_bullseye(
    old_c_lib: Path, bullseye: Path, cache: Path
) -> None:
    [result] = smoke_sysroot([old_c_lib], bullseye, cache=cache)
    assert result.ok
    assert "old symbols only" in result.output
    assert str(bullseye) in result.where


def test_missing_required_symbol_is_a_dlsym_error(
    old_c_lib: Path, bullseye: Path, cache: Path
) -> None:
    with pytest.raises(SmokeError, match=r"dlsym missing_fn in .*undefined symbol: missing_fn"):
        smoke_sysroot([old_c_lib], bullseye, symbol="missing_fn", cache=cache)
    with pytest.raises(SmokeError, match="dlsym missing_fn"):
        smoke_native([old_c_lib], symbol="missing_fn", cache=cache)


def test_absent_optional_symbol_only_loads(
    tmp_path: Path, bullseye: Path, cache: Path
) -> None:
    lib = c_library(tmp_path, "nosym", "int other(void) { return 1; }\n")
    [result] = smoke_sysroot([lib], bullseye, cache=cache)
    assert result.ok and "has no symbol test; loaded only" in result.output


def test_a_crash_inside_the_library_is_reported(tmp_path: Path, cache: Path) -> None:
    lib = c_library(tmp_path, "crash", "#include <stdlib.h>\nvoid test(void) { abort(); }\n")
    with pytest.raises(SmokeError, match="died of SIGABRT"):
        smoke_native([lib], cache=cache)


def test_missing_library_file_is_a_smoke_error(tmp_path: Path, cache: Path) -> None:
    with pytest.raises(SmokeError, match="no such library"):
        smoke_native([tmp_path / "libnothing.so"], cache=cache)
    with pytest.raises(SmokeError, match="run `invoke build` first"):
        smoke_native([], cache=cache)


# ----------------------------------------------------------------------------- harness


def test_harness_built_against_the_sysroot_needs_only_its_glibc(
    bullseye: Path, cache: Path
) -> None:
    from tasks.crates.audit import audit_library

    harness = compile_harness(cache, sysroot=bullseye)
    assert compile_harness(cache, sysroot=bullseye) == harness  # cached by source + sysroot
    audit = audit_library(harness, target_glibc="2.31")
    assert audit.ok, audit.too_new
    # ... whereas the host's own build of it needs this machine's glibc (dlopen@GLIBC_2.34)
    # and is refused by the old loader: building against the sysroot is what makes it run.
    native = compile_harness(cache)
    loader, dirs = sysroot_loader(bullseye)
    proc = subprocess.run(
        [str(loader), "--library-path", ":".join(map(str, dirs)), str(native)],
        capture_output=True, text=True, check=False,
    )
    assert proc.returncode != 0 and "GLIBC_2.34' not found" in proc.stderr


# ----------------------------------------------------------------------------- sysroots


def test_debian_sysroot_is_self_contained_and_cached(
    debs: list[Path], tmp_path: Path
) -> None:
    said: list[str] = []
    dest = make_sysroot_from_debs(debs, tmp_path / "sr", log=said.append)
    assert said and said[0].startswith("Making sysroot")
    loader = dest / "lib64" / "ld-linux-x86-64.so.2"
    assert loader.is_symlink() and not os.readlink(loader).startswith("/")
    assert loader.resolve().is_relative_to(dest) and loader.resolve().is_file()
    for link in dest.rglob("*"):
        if link.is_symlink():
            assert not os.readlink(link).startswith("/"), link
    said.clear()
    assert make_sysroot_from_debs(debs, dest, log=said.append) == dest
    assert said == []  # nothing to do, nothing said
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".part")] == []


def test_a_bad_deb_leaves_no_half_made_sysroot(tmp_path: Path) -> None:
    bad = tmp_path / "bad.deb"
    bad.write_bytes(b"!<arch>\ndata.tar.xz/    0           0     0     100644  999       `\nxx")
    with pytest.raises(CompatError):
        make_sysroot_from_debs([bad], tmp_path / "sr")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".sr.lock", "bad.deb"]


def test_sysroot_dest_that_is_not_a_sysroot_is_refused_and_kept(tmp_path: Path) -> None:
    """`invoke sysroot --dest DIR` on a project folder once replaced it; now it refuses."""
    project = tmp_path / "project"
    (project / "src").mkdir(parents=True)
    (project / "src" / "main.rs").write_text("fn main() {}")
    deb = tmp_path / "any.deb"
    deb.write_bytes(b"!<arch>\n")
    with pytest.raises(OutputError, match="not made by compatbuild"):
        make_sysroot_from_debs([deb], project)
    assert (project / "src" / "main.rs").read_text() == "fn main() {}"
    assert sorted(p.name for p in project.iterdir()) == ["src"]


def lockfile_with_rpms(path: Path, rpms: list[Path]) -> Path:
    entries = "".join(
        f'[[rpm]]\nname = "{r.name.rsplit("-", 2)[0]}"\nurl = "file://{r}"\n'
        f'sha256 = "{sha256_file(r)}"\n\n'
        for r in rpms
    )
    path.write_text(
        'schema = 1\n[target]\nname = "bullseye-as-fedora"\nglibc = "2.31"\n'
        f'[base]\nimage = "local/x"\nid = "sha256:{"0" * 64}"\n\n{entries}'
    )
    return path


def test_make_sysroot_without_glibc_pins_says_refresh_rpms(tmp_path: Path) -> None:
    lock = load(lockfile_with_rpms(tmp_path / "rsrc.lock.toml", []))
    with pytest.raises(LockfileError, match=r"no glibc RPM; run `invoke rpms --refresh` first"):
        make_sysroot(lock, Store(tmp_path / "cache"), tmp_path / "sr")
    assert not (tmp_path / "sr").exists()


FEDORA_LAYOUT = {  # Debian multiarch path -> Fedora path, per package
    "glibc": {
        "lib/x86_64-linux-gnu/ld-2.31.so": "lib64/ld-2.31.so",
        "lib/x86_64-linux-gnu/libc-2.31.so": "lib64/libc-2.31.so",
        "lib/x86_64-linux-gnu/libdl-2.31.so": "lib64/libdl-2.31.so",
        "lib/x86_64-linux-gnu/libgcc_s.so.1": "lib64/libgcc_s.so.1",
    },
    "glibc-devel": {
        "usr/lib/x86_64-linux-gnu/crt1.o": "usr/lib64/crt1.o",
        "usr/lib/x86_64-linux-gnu/crti.o": "usr/lib64/crti.o",
        "usr/lib/x86_64-linux-gnu/crtn.o": "usr/lib64/crtn.o",
        "usr/lib/x86_64-linux-gnu/libc_nonshared.a": "usr/lib64/libc_nonshared.a",
        "usr/include": "usr/include",
    },
}
FEDORA_LINKS = {
    "glibc": {"lib64/ld-linux-x86-64.so.2": "ld-2.31.so", "lib64/libc.so.6": "libc-2.31.so",
              "lib64/libdl.so.2": "libdl-2.31.so"},
    "glibc-devel": {"usr/lib64/libdl.so": "/lib64/libdl.so.2"},  # absolute, as Fedora ships it
}
LIBC_SO = ("OUTPUT_FORMAT(elf64-x86-64)\nGROUP ( /lib64/libc.so.6 /usr/lib64/libc_nonshared.a "
           " AS_NEEDED ( /lib64/ld-linux-x86-64.so.2 ) )\n")


def build_rpm(work: Path, name: str, bullseye: Path) -> Path:
    """A real xz-payload RPM of bullseye's glibc files in Fedora's lib64 layout (rpmbuild)."""
    buildroot = work / f"root-{name}"
    for src, dst in FEDORA_LAYOUT[name].items():
        (buildroot / dst).parent.mkdir(parents=True, exist_ok=True)
        if (bullseye / src).is_dir():
            shutil.copytree(bullseye / src, buildroot / dst, symlinks=True)
        else:
            shutil.copy2(bullseye / src, buildroot / dst)
    for link, target in FEDORA_LINKS[name].items():
        os.symlink(target, buildroot / link)
    if name == "glibc-devel":
        (buildroot / "usr/lib64/libc.so").write_text(LIBC_SO)
        os.link(buildroot / "usr/lib64/crti.o", buildroot / "usr/lib64/crti-hardlink.o")
    spec = work / f"{name}.spec"
    spec.write_text(textwrap.dedent(f"""\
        Name: {name}
        Version: 2.31
        Release: 1.test
        Summary: bullseye glibc in Fedora layout, for tests
        License: LGPL
        AutoReqProv: no
        %description
        test
        %install
        cp -a {buildroot}/. %{{buildroot}}/
        %files
        /*
        """))
    subprocess.run(
        ["rpmbuild", "-bb", "--quiet", "--define", f"_topdir {work / 'top'}",
         "--define", "_binary_payload w6.xzdio", "--define", "debug_package %{nil}",
         "--define", "__os_install_post %{nil}", "--define", "_build_id_links none",
         "--target", "x86_64", str(spec)],
        check=True, capture_output=True,
    )
    [rpm] = (work / "top" / "RPMS").rglob(f"{name}-2.31-*.rpm")
    return rpm


def test_make_sysroot_from_pinned_rpms_in_fedora_layout(
    bullseye: Path, native_hello: Path, old_c_lib: Path, tmp_path: Path, cache: Path
) -> None:
    rpms = [build_rpm(tmp_path, n, bullseye) for n in ("glibc", "glibc-devel")]
    lock = load(lockfile_with_rpms(tmp_path / "rsrc.lock.toml", rpms))
    store = Store(tmp_path / "cache")
    with pytest.raises(CompatError, match="not in the cache; run `invoke download`"):
        make_sysroot(lock, store, tmp_path / "f20", packages=("glibc", "glibc-devel"))
    with pytest.raises(LockfileError, match="no RPM for glibc-headers, kernel-headers, libgcc"):
        make_sysroot(lock, store, tmp_path / "f20")
    for r in lock.rpms:
        store.path(r.sha256).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(r.url.removeprefix("file://"), store.path(r.sha256))

    dest = make_sysroot(lock, store, tmp_path / "f20", packages=("glibc", "glibc-devel"))
    assert (dest / STAMP).is_file()
    assert os.readlink(dest / "usr/lib64/libdl.so") == "../../lib64/libdl.so.2"
    assert (dest / "usr/lib64/crti-hardlink.o").read_bytes() == (dest / "usr/lib64/crti.o").read_bytes()
    loader, dirs = sysroot_loader(dest)
    assert loader == dest / "lib64" / "ld-linux-x86-64.so.2"
    assert not (dest / "lib" / "x86_64-linux-gnu").exists()

    # the harness compiles against the lib64 layout, and the verdicts are the same
    [ok] = smoke_sysroot([old_c_lib], dest, cache=cache)
    assert "old symbols only" in ok.output
    with pytest.raises(SmokeError) as err:
        smoke_sysroot([native_hello], dest, cache=cache)
    assert NOT_FOUND.search(str(err.value))
    assert str(dest / "lib64/libc.so.6") in str(err.value)


def test_archive_links_cannot_lead_outside_the_sysroot(tmp_path: Path) -> None:
    """Links from packages are re-rooted in the sysroot; a hard link to a symlink is refused."""
    from tasks.crates.sysroot import _Tree

    outside = tmp_path / "outside.txt"
    outside.write_text("host file")
    root = tmp_path / "root"
    root.mkdir()
    tree = _Tree(root)
    tree.symlink("abs", "../..")                        # relative, climbing past the root
    tree.symlink("usr/lib/escape", "../../../../outside.txt")
    tree.symlink("usr/lib64/libdl.so", "/lib64/libdl.so.2")  # absolute: inside the sysroot
    for link in ("abs", "usr/lib/escape", "usr/lib64/libdl.so"):
        resolved = Path(os.path.realpath(root / link))
        assert resolved == root.resolve() or root.resolve() in resolved.parents, (link, resolved)
    assert Path(os.path.realpath(root / "usr/lib64/libdl.so")) == root.resolve() / "lib64/libdl.so.2"
    with pytest.raises(CompatError, match="names a symlink"):
        tree.hardlink("grab", "abs")
