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

from tasks.dlopen.smoke import compile_harness, smoke_native, smoke_sysroot, sysroot_loader
from tasks.dlopen.sysroot import STAMP, make_sysroot, make_sysroot_from_debs
from tasks.errors import CompatError, LockfileError, OutputError, SmokeError
from tasks.inputs.lockfile import load
from tasks.store import Store, sha256_file
from tests.support.gpgkeys import Keys, put
from tests.support.rpmtools import signed_copy, small_rpm

ROOT = Path(__file__).resolve().parents[2]
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
    from elftools.elf.elffile import ELFFile
    from elftools.elf.gnuversions import GNUVerNeedSection

    harness = compile_harness(cache, sysroot=bullseye)
    assert compile_harness(cache, sysroot=bullseye) == harness  # cached by source + sysroot
    with harness.open("rb") as f:  # an executable, which `invoke audit` (shared objects only) refuses
        elf = ELFFile(f)
        needs = [aux.name for sec in elf.iter_sections() if isinstance(sec, GNUVerNeedSection)
                 for _need, auxes in sec.iter_versions() for aux in auxes]
    glibcs = [tuple(int(x) for x in n.removeprefix("GLIBC_").split(".")) for n in needs if n.startswith("GLIBC_2")]
    assert glibcs and max(glibcs) <= (2, 31), needs
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


KEY_URL = "https://keys.example.invalid/RPM-GPG-KEY-test"


def lockfile_with_rpms(path: Path, rpms: list[Path], fingerprint: str = "0" * 40) -> Path:
    """A schema 1 lockfile pinning ``rpms``, signed (rpm_key) by the key ``fingerprint``."""
    entries = "".join(
        f'[[rpm]]\nname = "{r.name.rsplit("-", 2)[0]}"\nurl = "file://{r}"\n'
        f'sha256 = "{sha256_file(r)}"\n\n'
        for r in rpms
    )
    path.write_text(
        'schema = 1\n[target]\nname = "bullseye-as-fedora"\nglibc = "2.31"\nrpm_key = "test"\n'
        f'[base]\nimage = "local/x"\nid = "sha256:{"0" * 64}"\n\n'
        f'[[key]]\nname = "test"\nurl = "{KEY_URL}"\nfingerprints = ["{fingerprint}"]\n\n{entries}'
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
    bullseye: Path, native_hello: Path, old_c_lib: Path, tmp_path: Path, cache: Path, keys: Keys
) -> None:
    rpms = [signed_copy(r, tmp_path / r.name, keys.main, keys.ring.home)
            for r in (build_rpm(tmp_path, n, bullseye) for n in ("glibc", "glibc-devel"))]
    lock = load(lockfile_with_rpms(tmp_path / "rsrc.lock.toml", rpms, keys.main.fingerprint))
    store = Store(tmp_path / "cache")
    put(store, keys.main.public, KEY_URL)
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


def test_make_sysroot_refuses_an_unsigned_rpm_before_unpacking(
    tmp_path: Path, keys: Keys
) -> None:
    from tasks.errors import RpmSignerError, RpmUnsigned

    plain = small_rpm(tmp_path, "glibc", {"lib64/libc.so.6": b"not signed"}, version="2.18")
    foreign = signed_copy(plain, tmp_path / "glibc-2.18-1.fc20.x86_64.rpm", keys.other, keys.ring.home)
    for rpm, error in ((plain, RpmUnsigned), (foreign, RpmSignerError)):
        lock = load(lockfile_with_rpms(tmp_path / "rsrc.lock.toml", [rpm], keys.main.fingerprint))
        store = Store(tmp_path / f"cache-{error.exit_code}")
        put(store, keys.main.public, KEY_URL)
        put(store, rpm.read_bytes())
        with pytest.raises(error, match=f"rpm {rpm.name}: "):
            make_sysroot(lock, store, tmp_path / "sr", packages=("glibc",))
        assert not (tmp_path / "sr").exists()


def test_archive_links_cannot_lead_outside_the_sysroot(tmp_path: Path) -> None:
    """Links from packages are re-rooted in the sysroot; a hard link to a symlink is refused."""
    from tasks.dlopen.sysroot import _Tree

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


# ----------------------------------------------------------------------------- crafted archives
def newc(members: list[tuple[str, int, bytes]]) -> bytes:
    """A newc cpio stream of (name, mode, body) members, as an RPM payload carries them."""
    out = bytearray()

    def pad() -> None:
        out.extend(b"\0" * (-len(out) % 4))

    for ino, (name, mode, body) in enumerate([*members, ("TRAILER!!!", 0, b"")], start=1):
        raw = name.encode() + b"\0"
        fields = [ino, mode, 0, 0, 1, 0, len(body), 0, 0, 0, 0, len(raw), 0]
        out.extend(b"070701" + b"".join(b"%08X" % f for f in fields) + raw)
        pad()
        out.extend(body)
        pad()
    return bytes(out)


def deb(path: Path, members: list[tuple[str, int, bytes]]) -> Path:
    """A .deb (ar) whose data.tar.xz holds (name, mode, body) members; a link's body is its target."""
    import io
    import tarfile

    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w:xz") as tar:
        for name, mode, body in members:
            info = tarfile.TarInfo(name)
            if mode & 0o170000 == 0o120000:
                info.type, info.linkname = tarfile.SYMTYPE, body.decode()
                tar.addfile(info)
            elif mode & 0o170000 == 0o040000:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            else:
                info.size, info.mode = len(body), 0o644
                tar.addfile(info, io.BytesIO(body))
    blob = data.getvalue()
    header = b"data.tar.xz/".ljust(16) + b"0".ljust(12) + b"0".ljust(6) + b"0".ljust(6) + \
        b"100644".ljust(8) + str(len(blob)).encode().ljust(10) + b"`\n"
    path.write_bytes(b"!<arch>\n" + header + blob + b"\n" * (len(blob) & 1))
    return path


LNK, DIR, REG = 0o120777, 0o040755, 0o100644
ESCAPE = [("a", DIR, b""), ("a/b", LNK, b"/"), ("a/b/" * 16 + "usr", LNK, b"/usr"),
          ("lib64", DIR, b""), ("lib64/libc.so.6", REG, b"the sysroot's libc")]


def links_stay_inside(root: Path) -> None:
    real = Path(os.path.realpath(root))
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            p = Path(folder) / name
            if p.is_symlink():
                got = Path(os.path.realpath(p))
                assert got == real or real in got.parents, (p, os.readlink(p), got)


def test_links_under_linked_folders_stay_in_the_sysroot_cpio(tmp_path: Path) -> None:
    """`a/b -> /` then `a/b/a/b/.../usr -> /usr` once left dest/usr at the host's /usr."""
    import io

    from tasks.dlopen.sysroot import _Tree, _unpack_cpio

    root = tmp_path / "root"
    root.mkdir()
    _unpack_cpio(io.BytesIO(newc(ESCAPE)), _Tree(root), "evil.rpm")
    links_stay_inside(root)
    assert not os.readlink(root / "usr").startswith("..")
    assert not (root / "usr" / "bin").exists()  # the host's /usr/bin is not reachable
    assert (root / "a/b/a/b/lib64/libc.so.6").read_bytes() == b"the sysroot's libc"


def test_links_under_linked_folders_stay_in_the_sysroot_deb(tmp_path: Path) -> None:
    dest = make_sysroot_from_debs([deb(tmp_path / "evil.deb", ESCAPE)], tmp_path / "sr")
    links_stay_inside(dest)
    assert not (dest / "usr" / "bin").exists()


def test_a_link_resolves_through_links_already_written_as_the_sysroots(tmp_path: Path) -> None:
    """usrmerge: lib -> usr/lib; a link via lib/ lands in usr/lib, a file via it too."""
    members = [("usr/lib", DIR, b""), ("lib", LNK, b"usr/lib"), ("lib/libz.so.1", REG, b"z"),
               ("usr/lib/libz.so", LNK, b"/lib/libz.so.1"), ("x/up", LNK, b"../../../../lib")]
    dest = make_sysroot_from_debs([deb(tmp_path / "merged.deb", members)], tmp_path / "sr")
    assert (dest / "usr/lib/libz.so.1").read_bytes() == b"z"
    assert (dest / "usr/lib/libz.so").read_bytes() == b"z"
    assert Path(os.path.realpath(dest / "x/up")) == dest / "usr/lib"  # .. stops at the root
    links_stay_inside(dest)


def test_names_starting_with_a_dot_keep_it(tmp_path: Path) -> None:
    """`./.dot/l -> f` once became a dangling `../dot/f` (name.lstrip("./"))."""
    members = [("./.dot", DIR, b""), ("./.dot/f", REG, b"dotted"), ("./.dot/l", LNK, b"f"),
               ("./..hidden", REG, b"two dots")]
    dest = make_sysroot_from_debs([deb(tmp_path / "dot.deb", members)], tmp_path / "sr")
    assert os.readlink(dest / ".dot/l") == "f"
    assert (dest / ".dot/l").read_bytes() == b"dotted"
    assert (dest / "..hidden").read_bytes() == b"two dots"


def test_a_link_loop_is_one_sysroot_error(tmp_path: Path) -> None:
    from tasks.errors import SysrootError

    members = [("x", LNK, b"y"), ("y", LNK, b"x"), ("x/f", REG, b"")]
    with pytest.raises(SysrootError, match="too many levels of links"):
        make_sysroot_from_debs([deb(tmp_path / "loop.deb", members)], tmp_path / "sr")


class _Zeros:
    """A cpio stream with one member of ``size`` zero bytes, made on the fly; records reads."""

    def __init__(self, size: int) -> None:
        head = bytearray(newc([("big", REG, b"")])[:116])  # header + "big\0" + padding
        head[6 + 8 * 6: 6 + 8 * 7] = b"%08X" % size  # c_filesize
        self.parts: list[bytes | int] = [bytes(head), size, b"\0" * (-size % 4) + newc([])]
        self.largest = 0

    def read(self, n: int) -> bytes:
        self.largest = max(self.largest, n)
        out = bytearray()
        while len(out) < n and self.parts:
            part = self.parts[0]
            take = min(n - len(out), part if isinstance(part, int) else len(part))
            if isinstance(part, int):
                out.extend(bytes(take))
                rest: bytes | int = part - take
            else:
                out.extend(part[:take])
                rest = part[take:]
            if rest:
                self.parts[0] = rest
            else:
                self.parts.pop(0)
        return bytes(out)


def test_a_large_cpio_member_is_streamed_in_chunks(tmp_path: Path) -> None:
    """A 1.5 GB member once cost 1.5 GB of memory: it was read whole."""
    from tasks.dlopen.sysroot import _Tree, _unpack_cpio

    chunk = 1 << 20  # tasks.dlopen.sysroot_tree.CHUNK
    size = 40 * chunk + 3
    stream = _Zeros(size)
    root = tmp_path / "root"
    root.mkdir()
    _unpack_cpio(stream, _Tree(root), "big.rpm")  # type: ignore[arg-type]
    assert (root / "big").stat().st_size == size
    assert stream.largest <= chunk, stream.largest


# ----------------------------------------------------------------------------- bounded unpacking
def test_a_deb_that_unpacks_to_far_more_than_its_size_is_refused(tmp_path: Path) -> None:
    """A decompression bomb: ~10 KB of .deb whose data.tar.xz holds 40 MB of zeros. Each
    archive may unpack to UNPACK_RATIO x its size (at least UNPACK_FLOOR): one line, nothing left."""
    from tasks.dlopen import sysroot_tree
    from tasks.errors import SysrootError

    assert (sysroot_tree.UNPACK_RATIO, sysroot_tree.UNPACK_FLOOR) == (64, 16 << 20)
    bomb = deb(tmp_path / "bomb.deb", [("usr", DIR, b""), ("usr/zeros", REG, bytes(40 << 20))])
    assert bomb.stat().st_size < 100_000
    with pytest.raises(SysrootError, match=r"^bomb\.deb: unpacks to more than 16777216 bytes \(64 x its "
                       r"\d+ bytes, at least 16777216\); refused, and nothing of it kept$") as err:
        make_sysroot_from_debs([bomb], tmp_path / "sr")
    assert err.value.exit_code == 17
    assert not (tmp_path / "sr").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith((".part", ".old"))]  # no half-made tree


def test_an_rpm_that_unpacks_to_far_more_than_its_size_is_refused(tmp_path: Path) -> None:
    """The same bound on an RPM's payload (a 1.5 MB RPM once unpacked to 1.4 GB)."""
    from tasks.dlopen.sysroot import _Tree, _unpack_rpm
    from tasks.errors import SysrootError
    from tests.support.rpmtools import small_rpm

    rpm = small_rpm(tmp_path, "bomb", {"usr/share/zeros": bytes(40 << 20)})
    assert rpm.stat().st_size < 1 << 20
    root = tmp_path / "root"
    root.mkdir()
    with pytest.raises(SysrootError, match=r"^bomb\.rpm: unpacks to more than 16777216 bytes"):
        _unpack_rpm(rpm, _Tree(root), "bomb.rpm")


def test_an_archive_within_its_bound_unpacks(tmp_path: Path) -> None:
    """Each archive has its own budget: two of 10 MB each fit, where one budget of 16 MiB would not."""
    first = deb(tmp_path / "a.deb", [("a", REG, bytes(10 << 20))])
    second = deb(tmp_path / "b.deb", [("b", REG, bytes(10 << 20))])
    dest = make_sysroot_from_debs([first, second], tmp_path / "sr")
    assert (dest / "a").stat().st_size == (dest / "b").stat().st_size == 10 << 20
