"""tasks.inputs.rpmpins against fake Fedora 20 repositories served from loopback.

The repositories are built here, shaped like the real ones: a ``repodata/repomd.xml``
naming a gzipped (or xz) ``primary.xml`` in the common/rpm namespaces, with versioned
provides and requires, an rpmlib() requirement, file lists, an epoch, noarch and i686
packages, and a newer build of several packages in an 'updates' repository.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import lzma
import os
import shutil
import stat
import subprocess
import tarfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

import pytest
from pytest_httpserver import HTTPServer

from tasks.atomic import lock_for
from tasks.builder.docker_client import Docker, connect
from tasks.errors import CompatError, DockerError, DownloadError, HashMismatch, RpmError
from tasks.inputs import download, http
from tasks.inputs import rpmpins as rpms
from tasks.inputs.lockfile import load
from tasks.inputs.rpmpins import Dep, Evr, parse_evr, parse_installed, rpmvercmp, satisfies
from tasks.store import Store
from tests.support.gpgkeys import Keys

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(__file__).resolve().parents[1] / "data" / "rpms"
_OPS = {"=": "EQ", "<": "LT", ">": "GT", "<=": "LE", ">=": "GE"}


# ------------------------------------------------------------------ a fake repository
@dataclass(frozen=True)
class P:
    """A package to put in a fake repository: requires/provides are rpm-style strings."""

    name: str
    evr: str
    arch: str = "x86_64"
    requires: tuple[str, ...] = ()
    provides: tuple[str, ...] = ()
    files: tuple[str, ...] = ()
    checksum_type: str = "sha256"
    data: bytes = b""  # a real .rpm file's bytes; empty: a stand-in body

    @property
    def e_v_r(self) -> Evr:
        return parse_evr(self.evr)

    @property
    def filename(self) -> str:
        e = self.e_v_r
        return f"{self.name}-{e.version}-{e.release}.{self.arch}.rpm"

    @property
    def body(self) -> bytes:  # the .rpm file, or a stand-in for it
        return self.data or hashlib.sha256(self.filename.encode()).digest() * 2000


def _entry(dep: str) -> str:
    parts = dep.split(" ")
    if len(parts) == 1:
        return f"<rpm:entry name={quoteattr(dep)}/>"
    evr = parse_evr(parts[2])
    rel = f" rel={quoteattr(evr.release)}" if evr.release else ""
    return (f"<rpm:entry name={quoteattr(parts[0])} flags=\"{_OPS[parts[1]]}\" "
            f"epoch=\"{evr.epoch}\" ver={quoteattr(evr.version)}{rel}/>")


def primary_xml(pkgs: list[P]) -> bytes:
    out = ['<?xml version="1.0" encoding="UTF-8"?>\n<metadata '
           'xmlns="http://linux.duke.edu/metadata/common" '
           f'xmlns:rpm="http://linux.duke.edu/metadata/rpm" packages="{len(pkgs)}">']
    for p in pkgs:
        e = p.e_v_r
        hexd = hashlib.new("sha1" if p.checksum_type == "sha" else p.checksum_type, p.body)
        self_provides = (f"{p.name} = {p.evr}", f"{p.name}({p.arch.replace('_', '-')}) = {p.evr}")
        provides = "".join(_entry(d) for d in (*self_provides, *p.provides))
        requires = "".join(_entry(d) for d in p.requires)
        files = "".join(f"<file>{escape(f)}</file>" for f in p.files)
        out.append(f"""<package type="rpm">
  <name>{p.name}</name>
  <arch>{p.arch}</arch>
  <version epoch="{e.epoch}" ver="{e.version}" rel="{e.release}"/>
  <checksum type="{p.checksum_type}" pkgid="YES">{hexd.hexdigest()}</checksum>
  <summary>{p.name} &amp; friends</summary>
  <description>Fake.</description>
  <packager>Fedora Project</packager>
  <url>http://example.invalid/</url>
  <time file="1386693283" build="1386690000"/>
  <size package="{len(p.body)}" installed="{3 * len(p.body)}" archive="{2 * len(p.body)}"/>
  <location href="Packages/{p.name[0]}/{p.filename}"/>
  <format>
    <rpm:license>GPLv3+</rpm:license>
    <rpm:vendor>Fedora Project</rpm:vendor>
    <rpm:group>Development/Languages</rpm:group>
    <rpm:buildhost>buildvm-05.phx2.fedoraproject.org</rpm:buildhost>
    <rpm:sourcerpm>{p.name}-{e.version}-{e.release}.src.rpm</rpm:sourcerpm>
    <rpm:header-range start="1384" end="98765"/>
    <rpm:provides>{provides}</rpm:provides>
    <rpm:requires>{requires}</rpm:requires>
    {files}
  </format>
</package>""")
    out.append("</metadata>\n")
    return "\n".join(out).encode()


def repomd_xml(href: str, packed: bytes, unpacked: bytes, *, listed: str | None = None) -> bytes:
    shown = listed or hashlib.sha256(packed).hexdigest()
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<repomd xmlns="http://linux.duke.edu/metadata/repo" xmlns:rpm="http://linux.duke.edu/metadata/rpm">
  <revision>1386693283</revision>
  <data type="filelists">
    <checksum type="sha256">{"ab" * 32}</checksum>
    <location href="repodata/{"ab" * 32}-filelists.xml.gz"/>
  </data>
  <data type="primary">
    <checksum type="sha256">{shown}</checksum>
    <open-checksum type="sha256">{hashlib.sha256(unpacked).hexdigest()}</open-checksum>
    <location href="{href}"/>
    <timestamp>1386693283</timestamp>
    <size>{len(packed)}</size>
    <open-size>{len(unpacked)}</open-size>
  </data>
</repomd>
""".encode()


def serve_repo(server: HTTPServer, prefix: str, pkgs: list[P], *, xz: bool = False,
               listed: str | None = None) -> str:
    """Serve a repository at ``/<prefix>/``; return its base URL."""
    xml = primary_xml(pkgs)
    packed = lzma.compress(xml) if xz else gzip.compress(xml, mtime=0)
    href = f"repodata/{hashlib.sha256(packed).hexdigest()}-primary.xml.{'xz' if xz else 'gz'}"
    server.expect_request(f"/{prefix}/repodata/repomd.xml").respond_with_data(
        repomd_xml(href, packed, xml, listed=listed))
    server.expect_request(f"/{prefix}/{href}").respond_with_data(packed)
    for p in pkgs:
        server.expect_request(f"/{prefix}/Packages/{p.name[0]}/{p.filename}").respond_with_data(p.body)
    return server.url_for(f"/{prefix}/")


GCC_REQ = ("glibc-devel >= 2.2.90-12", "binutils >= 2.20.51.0.2-12", "/bin/sh",
           "rpmlib(CompressedFileNames) <= 3.0.4-1", "rpmlib(PayloadFilesHavePrefix) <= 4.0-1")
RELEASES = [
    P("gcc", "4.8.2-7.fc20", requires=("cpp = 4.8.2-7.fc20", "libgcc >= 4.8.2-7.fc20", *GCC_REQ)),
    P("cpp", "4.8.2-7.fc20", requires=("libmpc.so.3()(64bit)",)),
    P("libgcc", "4.8.2-7.fc20", provides=("libgcc_s.so.1()(64bit)",)),
    P("libmpc", "1.0.1-3.fc20", provides=("libmpc.so.3()(64bit)",),
      requires=("libc.so.6()(64bit)",)),
    P("binutils", "2.23.88.0.1-13.fc20", requires=("/usr/sbin/install-info", "libc.so.6()(64bit)"),
      files=("/usr/bin/ld", "/usr/bin/ld.bfd")),
    P("info", "5.1-4.fc20", files=("/usr/bin/info", "/usr/sbin/install-info")),
    P("glibc", "2.18-11.fc20", requires=("glibc-common = 2.18-11.fc20",),
      provides=("libc.so.6()(64bit)", "/sbin/ldconfig"), files=("/usr/sbin/ldconfig",)),
    P("glibc-common", "2.18-11.fc20", requires=("glibc = 2.18-11.fc20", "tzdata >= 2003a")),
    P("glibc-headers", "2.18-11.fc20", requires=("glibc = 2.18-11.fc20",)),
    P("glibc-devel", "2.18-11.fc20", requires=("glibc-headers = 2.18-11.fc20",)),
    P("kernel-headers", "3.11.10-301.fc20"),
    P("make", "1:3.82-19.fc20", requires=("/bin/sh", "libc.so.6()(64bit)"),
      files=("/usr/bin/make", "/usr/bin/gmake")),
    P("which", "2.20-6.fc20", requires=("/bin/sh", "libc.so.6()(64bit)")),
    P("tzdata", "2013g-1.fc20", arch="noarch"),
    P("coreutils", "8.21-13.fc20", requires=("libc.so.6()(64bit)",)),
    P("broken", "1.0-1.fc20", requires=("libnothere.so.1()(64bit)",)),
    P("lib32only", "1.0-1.fc20", arch="i686", provides=("lib32only.so.1",)),
    P("needs32", "1.0-1.fc20", requires=("lib32only.so.1",)),
    P("oldcpp-user", "1.0-1.fc20", requires=("cpp = 4.8.2-7.fc20",)),
]
UPDATES = [
    P("gcc", "4.8.3-7.fc20", requires=("cpp = 4.8.3-7.fc20", "libgcc >= 4.8.3-7.fc20", *GCC_REQ)),
    P("cpp", "4.8.3-7.fc20", requires=("libmpc.so.3()(64bit)",)),
    P("libgcc", "4.8.3-7.fc20", provides=("libgcc_s.so.1()(64bit)",)),
    P("libgcc", "4.8.3-7.fc20", arch="i686", provides=("libgcc_s.so.1",)),
    P("glibc", "2.18-19.fc20", requires=("glibc-common = 2.18-19.fc20",),
      provides=("libc.so.6()(64bit)", "/sbin/ldconfig"), files=("/usr/sbin/ldconfig",)),
    P("glibc", "2.18-19.fc20", arch="i686", requires=("glibc-common = 2.18-19.fc20",),
      provides=("libc.so.6",)),
    P("glibc-common", "2.18-19.fc20", requires=("glibc = 2.18-19.fc20", "tzdata >= 2003a")),
    P("glibc-headers", "2.18-19.fc20",
      requires=("glibc = 2.18-19.fc20", "kernel-headers >= 2.2.1")),
    P("glibc-devel", "2.18-19.fc20",
      requires=("glibc = 2.18-19.fc20", "glibc-headers = 2.18-19.fc20")),
    P("kernel-headers", "3.19.8-100.fc20"),
    P("make", "4.0-1.fc20", requires=("/bin/sh",)),  # newer version, but epoch 0 < 1
    P("tzdata", "2015a-1.fc20", arch="noarch"),
    P("coreutils", "8.21-21.fc20", requires=("libc.so.6()(64bit)",)),
    P("cpp-user", "1.0-1.fc20", requires=("cpp = 4.8.2-7.fc20", "gcc")),
    P("info", "5.1-4.fc20", files=("/usr/bin/info", "/usr/sbin/install-info")),  # a tie
]
BASE = ["/bin/sh", "/usr/bin/bash", "bash = 4.2.47-2.fc20", "bash(x86-64) = 4.2.47-2.fc20",
        "glibc = 2.18-11.fc20", "glibc-common = 2.18-11.fc20", "libc.so.6()(64bit)",
        "/usr/sbin/ldconfig", "coreutils = 8.21-13.fc20", "config(setup) = 2.8.71-2.fc20"]
WANTED = ["coreutils", "gcc", "make", "which", *rpms.SYSROOT_PACKAGES]
EXPECTED = {  # name -> the NEVRA resolve must pick, and the repository it comes from
    "binutils": ("binutils-2.23.88.0.1-13.fc20.x86_64", "releases"),
    "cpp": ("cpp-4.8.3-7.fc20.x86_64", "updates"),
    "gcc": ("gcc-4.8.3-7.fc20.x86_64", "updates"),
    "glibc": ("glibc-2.18-19.fc20.x86_64", "updates"),
    "glibc-common": ("glibc-common-2.18-19.fc20.x86_64", "updates"),
    "glibc-devel": ("glibc-devel-2.18-19.fc20.x86_64", "updates"),
    "glibc-headers": ("glibc-headers-2.18-19.fc20.x86_64", "updates"),
    "info": ("info-5.1-4.fc20.x86_64", "updates"),  # in both: the later repository wins
    "kernel-headers": ("kernel-headers-3.19.8-100.fc20.x86_64", "updates"),
    "libgcc": ("libgcc-4.8.3-7.fc20.x86_64", "updates"),
    "libmpc": ("libmpc-1.0.1-3.fc20.x86_64", "releases"),
    "make": ("make-1:3.82-19.fc20.x86_64", "releases"),
    "tzdata": ("tzdata-2015a-1.fc20.noarch", "updates"),
    "which": ("which-2.20-6.fc20.x86_64", "releases"),
}


@pytest.fixture
def repos(httpserver: HTTPServer) -> tuple[str, str]:
    return serve_repo(httpserver, "releases", RELEASES), serve_repo(httpserver, "updates", UPDATES)


@pytest.fixture
def loaded(repos: tuple[str, str]) -> list[list[rpms.Package]]:
    return [rpms.load_repo(url, http.get_bytes) for url in repos]


@pytest.fixture
def lock(tmp_path: Path) -> Path:
    path = tmp_path / "rsrc.lock.toml"
    shutil.copyfile(ROOT / "rsrc.lock.toml", path)
    return path


@pytest.fixture(autouse=True)
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(http, "RETRY_DELAYS", (0.0, 0.0, 0.0))


def resolve(loaded: list[list[rpms.Package]], wanted: list[str], installed: list[str],
            force: tuple[str, ...] = rpms.SYSROOT_PACKAGES) -> dict[str, str]:
    got = rpms.resolve(loaded, wanted, installed_provides=set(installed), force=force)
    return {p.name: p.nevra for p in got}


# ------------------------------------------------------------------ version comparison
@pytest.mark.parametrize(("a", "b", "want"), [
    ("1.0", "1.0", 0),
    ("1.0", "1.0.1", -1),
    ("1.0a", "1.0", 1),            # leftover characters win
    ("1.0a", "1.0.1", -1),         # letters are older than a number
    ("2.18", "2.18", 0),
    ("11.fc20", "19.fc20", -1),    # numbers compare as numbers ...
    ("10", "9", 1),
    ("010", "10", 0),              # ... leading zeros do not count
    ("1.01", "1.1", 0),
    ("2.23.88.0.1", "2.20.51.0.2", 1),
    ("2013g", "2003a", 1),
    ("a", "b", -1),
    ("1_0", "1.0", 0),             # separators only separate
    ("1.0", "1.0.", 0),
    ("1.0~rc1", "1.0", -1),        # tilde sorts before the end
    ("1.0~rc1", "1.0~rc2", -1),
    ("1.0~rc1~git", "1.0~rc1", -1),
    ("1.0^", "1.0", 1),            # caret sorts after the end ...
    ("1.0^git1", "1.0.1", -1),     # ... but before more version
    ("1.0^git1", "1.0^git2", -1),
    ("1.0", "1.0^git1", -1),
    ("4.8.3", "4.8.2", 1),
    ("20101121", "20101122", -1),
    ("99999999999999999999", "100000000000000000000", -1),
])
def test_rpmvercmp(a: str, b: str, want: int) -> None:
    assert rpmvercmp(a, b) == want
    assert rpmvercmp(b, a) == -want


@pytest.mark.parametrize(("a", "b", "want"), [
    ("2.18-11.fc20", "2.18-19.fc20", -1),
    ("1:3.82-19.fc20", "4.0-1.fc20", 1),   # epoch outranks version
    ("0:4.0-1.fc20", "4.0-1.fc20", 0),
    ("2.18", "2.18-19.fc20", 0),           # a requirement without release matches any
    ("4.8.3-7.fc20", "4.8.3-10.fc20", -1),
])
def test_evrcmp(a: str, b: str, want: int) -> None:
    assert rpms.evrcmp(parse_evr(a), parse_evr(b)) == want


@pytest.mark.parametrize(("provide", "req", "want"), [
    ("glibc = 2.18-19.fc20", "glibc = 2.18-19.fc20", True),
    ("glibc = 2.18-11.fc20", "glibc = 2.18-19.fc20", False),
    ("glibc = 2.18-11.fc20", "glibc >= 2.2.90-12", True),
    ("tzdata = 2013g-1.fc20", "tzdata >= 2003a", True),
    ("make = 1:3.82-19.fc20", "make >= 4.0", True),
    ("make = 3.82-19.fc20", "make >= 4.0", False),
    ("make = 3.82-19.fc20", "make < 4.0", True),
    ("make = 4.0-1.fc20", "make < 4.0", False),
    ("make = 4.0-1.fc20", "make <= 4.0", True),
    ("libfoo", "libfoo >= 99", True),      # an unversioned provide meets any version
    ("libfoo = 1.0-1", "libfoo", True),
    ("libfoo = 1.0-1", "libbar", False),
])
def test_satisfies(provide: str, req: str, want: bool) -> None:
    def dep(s: str) -> Dep:
        return next(iter(parse_installed([s]).values()))[0]

    assert satisfies(dep(provide), dep(req)) is want


def test_parse_installed_reads_rpm_output_lines() -> None:
    have = parse_installed(["bash = 4.2.47-2.fc20", "/bin/sh", "  libc.so.6()(64bit)  ", "",
                            "perl = 4:5.18.4-292.fc20", "(contains no files)",
                            "warning: Generating 12 missing index(es), please wait..."])
    assert sorted(have) == ["/bin/sh", "bash", "libc.so.6()(64bit)", "perl"]
    assert have["perl"] == [Dep("perl", 8, Evr(4, "5.18.4", "292.fc20"))]
    assert have["/bin/sh"] == [Dep("/bin/sh")]


# ------------------------------------------------------------------ repository metadata
def test_load_repo_reads_primary(loaded: list[list[rpms.Package]], repos: tuple[str, str]) -> None:
    gcc = next(p for p in loaded[1] if p.name == "gcc")
    assert (gcc.arch, gcc.evr, gcc.nevra) == ("x86_64", Evr(0, "4.8.3", "7.fc20"),
                                              "gcc-4.8.3-7.fc20.x86_64")
    assert gcc.url == repos[1] + "Packages/g/gcc-4.8.3-7.fc20.x86_64.rpm"
    assert gcc.checksum_type == "sha256"
    assert gcc.checksum == hashlib.sha256(UPDATES[0].body).hexdigest()
    assert gcc.size == len(UPDATES[0].body)
    assert [str(r) for r in gcc.requires] == [
        "cpp = 4.8.3-7.fc20", "libgcc >= 4.8.3-7.fc20", "glibc-devel >= 2.2.90-12",
        "binutils >= 2.20.51.0.2-12", "/bin/sh"]  # rpmlib() requirements left out
    assert {d.name for d in gcc.provides} == {"gcc", "gcc(x86-64)"}
    make = next(p for p in loaded[0] if p.name == "make")
    assert make.evr.epoch == 1 and make.files == ("/usr/bin/make", "/usr/bin/gmake")
    assert {p.arch for p in loaded[1]} == {"x86_64", "i686", "noarch"}


def test_load_repo_reads_xz_primary(httpserver: HTTPServer) -> None:
    url = serve_repo(httpserver, "xz", RELEASES[:3], xz=True)
    assert [p.name for p in rpms.load_repo(url.rstrip("/"), http.get_bytes)] == [
        "gcc", "cpp", "libgcc"]


def test_primary_whose_checksum_does_not_match_repomd_is_refused(httpserver: HTTPServer) -> None:
    url = serve_repo(httpserver, "bad", RELEASES, listed="0" * 64)
    with pytest.raises(HashMismatch, match=r"sha256 mismatch: repomd.xml lists 0{64}, got [0-9a-f]{64}"):
        rpms.load_repo(url, http.get_bytes)


def test_missing_repomd_is_a_download_error_without_retries(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/nope/repodata/repomd.xml").respond_with_data("", status=404)
    with pytest.raises(DownloadError, match=r"HTTP 404 NOT FOUND for .*/nope/repodata/repomd.xml"):
        rpms.load_repo(httpserver.url_for("/nope/"), http.get_bytes)
    assert len(httpserver.log) == 1


def test_get_bytes_retries_a_server_error(httpserver: HTTPServer) -> None:
    httpserver.expect_oneshot_request("/flaky").respond_with_data("busy", status=503)
    httpserver.expect_request("/flaky").respond_with_data(b"ok")
    assert http.get_bytes(httpserver.url_for("/flaky")) == b"ok"
    assert len(httpserver.log) == 2


def test_get_bytes_gives_up_on_a_server_that_keeps_failing(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/down").respond_with_data("busy", status=503)
    with pytest.raises(DownloadError, match=r"HTTP 503 .* \(gave up after 4 tries\)"):
        http.get_bytes(httpserver.url_for("/down"))
    assert len(httpserver.log) == 4


def test_garbage_repomd_is_one_line_error(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/junk/repodata/repomd.xml").respond_with_data(b"<html><body>")
    with pytest.raises(RpmError, match="not valid XML") as exc:
        rpms.load_repo(httpserver.url_for("/junk/"), http.get_bytes)
    assert "\n" not in str(exc.value)


# ------------------------------------------------------------------ resolution
def test_resolve_picks_exactly_the_closure(loaded: list[list[rpms.Package]]) -> None:
    got = rpms.resolve(loaded, WANTED, installed_provides=set(BASE),
                       force=rpms.SYSROOT_PACKAGES)
    assert [p.name for p in got] == sorted(EXPECTED)  # sorted by name, coreutils installed
    assert {p.name: p.nevra for p in got} == {n: v for n, (v, _repo) in EXPECTED.items()}
    assert all(p.arch != "i686" for p in got)
    assert rpms.resolve(loaded, WANTED, installed_provides=set(BASE),
                        force=rpms.SYSROOT_PACKAGES) == got  # deterministic


def test_installed_version_that_meets_the_requirement_is_not_pinned(
        loaded: list[list[rpms.Package]]) -> None:
    base = [*BASE, "glibc-common = 2.18-19.fc20"]  # the base already has the newest
    got = resolve(loaded, WANTED, base)
    assert "glibc-common" not in got and "tzdata" not in got  # tzdata came only via it
    assert got["glibc"] == "glibc-2.18-19.fc20.x86_64"


def test_bare_installed_name_meets_any_version(loaded: list[list[rpms.Package]]) -> None:
    assert "glibc-common" not in resolve(loaded, ["glibc"], ["glibc-common"])


def test_sysroot_packages_are_pinned_even_when_installed(
        loaded: list[list[rpms.Package]]) -> None:
    base = [*BASE, "kernel-headers = 3.19.8-100.fc20"]
    assert "kernel-headers" in resolve(loaded, WANTED, base)
    assert "kernel-headers" not in resolve(loaded, ["kernel-headers"], base, force=())


def test_versioned_requirement_picks_the_older_build(loaded: list[list[rpms.Package]]) -> None:
    assert resolve(loaded, ["oldcpp-user"], BASE, force=())["cpp"] == "cpp-4.8.2-7.fc20.x86_64"


def test_two_builds_of_one_name_is_an_error(loaded: list[list[rpms.Package]]) -> None:
    with pytest.raises(RpmError, match=r"needs cpp-4.8.2-7.fc20.x86_64, but "
                       r"cpp-4.8.3-7.fc20.x86_64 is already chosen"):
        resolve(loaded, ["gcc", "cpp-user"], BASE)


def test_unsatisfiable_requirement_names_it_and_who_needs_it(
        loaded: list[list[rpms.Package]]) -> None:
    with pytest.raises(RpmError) as exc:
        resolve(loaded, ["gcc", "broken"], BASE)
    text = str(exc.value)
    assert "'libnothere.so.1()(64bit)'" in text and "broken-1.0-1.fc20.x86_64" in text
    assert "\n" not in text and isinstance(exc.value, CompatError)


def test_i686_provider_never_counts(loaded: list[list[rpms.Package]]) -> None:
    with pytest.raises(RpmError, match=r"'lib32only.so.1' needed by needs32"):
        resolve(loaded, ["needs32"], BASE)


def test_wanted_name_nothing_provides(loaded: list[list[rpms.Package]]) -> None:
    with pytest.raises(RpmError, match=r"nothing provides 'gcc-go' needed by the wanted list"):
        resolve(loaded, ["gcc-go"], BASE)


# ------------------------------------------------------------------ refresh
def comments(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.lstrip().startswith("#")]


def test_refresh_pins_the_closure_into_the_lockfile(
        lock: Path, repos: tuple[str, str], tmp_path: Path) -> None:
    before = lock.read_text()
    old = load(lock)
    lines: list[str] = []
    base = {*BASE, "kernel-headers = 3.19.8-100.fc20"}  # a sysroot package, already newest
    pins = rpms.refresh(lock, repos=repos, packages=WANTED, installed=base, log=lines.append)
    new = load(lock)
    assert new.rpms == tuple(pins)
    assert [r.name for r in new.rpms] == sorted(EXPECTED)
    for r in new.rpms:
        nevra, where = EXPECTED[r.name]
        assert r.url == f"{repos[where == 'updates']}Packages/{r.name[0]}/{r.filename}"
        assert r.filename == nevra.replace("make-1:", "make-") + ".rpm"  # no epoch in names
        assert r.sha256 == hashlib.sha256(
            next(p.body for p in RELEASES + UPDATES if p.filename == r.filename)).hexdigest()
    # everything else in the lockfile is as it was, comments included
    assert (new.target, new.base, new.keys, new.artifacts) == (
        old.target, old.base, old.keys, old.artifacts)
    assert set(comments(before)) <= set(comments(lock.read_text()))
    assert lock.read_text().startswith(before.rstrip("\n"))
    assert "[[rpm]] # gcc-4.8.3-7.fc20.x86_64" in lock.read_text()
    sizes = {p.filename: len(p.body) for p in RELEASES + UPDATES}
    size = sum(sizes[r.filename] for r in pins) / 1e6
    assert lines[-1] == f"Pinned 14 packages for fedora20 ({size:.1f} MB)"
    assert lines[:2] == [f"Reading repository metadata from {u}" for u in repos]
    # and every pin really fetches and verifies through tasks.inputs.download
    store = Store(tmp_path / "cache")
    for res in new.resources():
        if res.label.startswith("rpm "):
            assert download.fetch(res, store).sha256 == res.sha256


def test_refresh_again_changes_nothing(lock: Path, repos: tuple[str, str]) -> None:
    rpms.refresh(lock, repos=repos, packages=WANTED, installed=BASE, log=lambda _s: None)
    first, stamp = lock.read_text(), lock.stat().st_mtime_ns
    time.sleep(0.01)
    rpms.refresh(lock, repos=repos, packages=WANTED, installed=BASE, log=lambda _s: None)
    assert lock.read_text() == first and lock.stat().st_mtime_ns == stamp


def test_refresh_writes_under_the_lockfile_lock_keeping_its_mode(
        lock: Path, repos: tuple[str, str]) -> None:
    """`invoke rpms --refresh` and `invoke lock` take turns: refresh waits for the lock."""
    lock.chmod(0o600)
    outcome: list[object] = []

    def run() -> None:
        try:
            outcome.append(rpms.refresh(lock, repos=repos, packages=WANTED, installed=BASE,
                                        log=lambda _s: None))
        except Exception as exc:  # handed to the test's thread
            outcome.append(exc)

    with lock_for(lock):  # what `invoke lock` holds while it writes
        worker = threading.Thread(target=run)
        worker.start()
        worker.join(timeout=1.0)  # long enough to resolve these small repositories
        assert worker.is_alive() and "[[rpm]]" not in lock.read_text()
    worker.join(timeout=30)
    assert len(outcome) == 1 and isinstance(outcome[0], list), outcome
    assert load(lock).rpms == tuple(outcome[0])
    assert stat.S_IMODE(lock.stat().st_mode) == 0o600


def test_refresh_replaces_an_old_pin_set(lock: Path, repos: tuple[str, str]) -> None:
    rpms.refresh(lock, repos=repos, packages=WANTED, installed=BASE, log=lambda _s: None)
    pins = rpms.refresh(lock, repos=repos, packages=["which"], installed=["/bin/sh"], sysroot=(),
                        log=lambda _s: None)
    assert [r.name for r in load(lock).rpms] == [r.name for r in pins] == [
        "glibc", "glibc-common", "tzdata", "which"]
    assert lock.read_text().count("[[rpm]]") == 4
    rpms.refresh(lock, repos=repos, packages=["coreutils"], installed=BASE, sysroot=(),
                 log=lambda _s: None)
    assert load(lock).rpms == () and "[[rpm]]" not in lock.read_text()


def test_refresh_failure_leaves_the_lockfile_alone(lock: Path, repos: tuple[str, str]) -> None:
    before = lock.read_text()
    with pytest.raises(RpmError, match="libnothere"):
        rpms.refresh(lock, repos=repos, packages=["gcc", "broken"], installed=BASE,
                     log=lambda _s: None)
    assert lock.read_text() == before


def test_refresh_refuses_a_repository_without_sha256(
        lock: Path, httpserver: HTTPServer) -> None:
    url = serve_repo(httpserver, "old", [P("which", "2.20-6.fc20", checksum_type="sha")])
    with pytest.raises(RpmError, match=r"which-2.20-6.fc20.x86_64: the repository lists only a "
                       r"sha1 checksum"):
        rpms.refresh(lock, repos=[url], packages=["which"], installed=[], log=lambda _s: None)


def test_refresh_uses_the_fetcher_it_is_given(lock: Path, repos: tuple[str, str]) -> None:
    asked: list[str] = []

    def fetch(url: str) -> bytes:
        asked.append(url)
        return http.get_bytes(url)

    rpms.refresh(lock, repos=repos, packages=["which"], installed=BASE, sysroot=(),
                 fetch_bytes=fetch, log=lambda _s: None)
    assert [u.rsplit("/", 1)[-1][-14:] for u in asked] == ["repomd.xml", "primary.xml.gz"] * 2


def test_refresh_against_a_createrepo_c_repository_of_real_rpms(
        lock: Path, httpserver: HTTPServer, tmp_path: Path) -> None:
    """tests/data/rpms/repo was made by rpmbuild and createrepo_c (see make_repo.sh)."""
    import rpmfile

    repo = DATA / "repo"
    for f in repo.rglob("*"):
        if f.is_file():
            httpserver.expect_request(f"/real/{f.relative_to(repo).as_posix()}").respond_with_data(
                f.read_bytes())
    pins = rpms.refresh(lock, repos=[httpserver.url_for("/real")], packages=["tool", "docs"],
                        installed=["/bin/sh"], sysroot=(), log=lambda _s: None)
    assert [(r.name, r.filename) for r in pins] == [
        ("docs", "docs-0.5-1.fc20.noarch.rpm"), ("helper", "helper-2.1-3.fc20.x86_64.rpm"),
        ("tool", "tool-1.0-1.fc20.x86_64.rpm")]  # tool needs helper >= 1:2.0, docs helper-api
    store = Store(tmp_path / "cache")
    for res in load(lock).resources():
        if res.label.startswith("rpm "):
            path = download.fetch(res, store).path
            assert res.sha256 == hashlib.sha256((repo / "Packages" / res.filename).read_bytes(
                )).hexdigest()
            with rpmfile.open(str(path)) as rpm:
                h = rpm.headers
                got = b"-".join([h["name"], h["version"], h["release"]]) + b"." + h["arch"]
            assert res.filename == got.decode() + ".rpm"


# ------------------------------------------------------------------ the base image (Docker)
@pytest.fixture(scope="module")
def fake_rpm_images(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Docker, str, str]]:
    """Two FROM-scratch images whose /usr/bin/rpm answers like Fedora 20's, or fails."""
    try:
        dk = connect()
    except DockerError as exc:
        pytest.fail(f"needs the Docker daemon: {exc}", pytrace=False)
    tags = []
    for variant in ("ok", "fail"):
        exe = tmp_path_factory.mktemp("fake-rpm") / "rpm"
        flags = ["-DFAIL"] if variant == "fail" else []
        try:
            subprocess.run(["gcc", "-static", "-O2", *flags, "-o", str(exe),
                            str(DATA / "fake_rpm.c")], check=True, capture_output=True)
        except (OSError, subprocess.CalledProcessError) as exc:
            pytest.fail(f"cannot build a static test binary with gcc (apt: libc6-dev): {exc}", pytrace=False)
        ctx = io.BytesIO()
        with tarfile.open(fileobj=ctx, mode="w") as tar:
            df = b"FROM scratch\nCOPY rpm /usr/bin/rpm\n"
            info = tarfile.TarInfo("Dockerfile")
            info.size = len(df)
            tar.addfile(info, io.BytesIO(df))
            tar.add(str(exe), arcname="rpm")
        ctx.seek(0)
        tag = f"compatbuild-test/fake-rpm:{variant}-{os.getpid()}"
        dk.build(ctx, tag=tag, buildargs={}, labels={}, on_line=lambda _s: None,
                 what="fake rpm image")
        tags.append(tag)
    yield dk, tags[0], tags[1]
    for tag in tags:
        dk.remove_image(tag)


@pytest.mark.docker
def test_installed_in_base_collects_provides_files_and_versions(
        fake_rpm_images: tuple[Docker, str, str]) -> None:
    dk, ok, _fail = fake_rpm_images
    got = rpms.installed_in_base(dk, ok)
    assert got == {"bash = 4.2.47-2.fc20", "bash(x86-64) = 4.2.47-2.fc20", "/bin/sh",
                   "glibc = 2.18-11.fc20", "libc.so.6()(64bit)", "config(setup) = 2.8.71-2.fc20",
                   "/usr/bin/bash", "/usr/sbin/ldconfig", "make = 1:3.82-19.fc20"}


@pytest.mark.docker
def test_installed_in_base_reports_a_failing_rpm(fake_rpm_images: tuple[Docker, str, str]) -> None:
    dk, _ok, fail = fake_rpm_images
    with pytest.raises(DockerError, match=r"rpm -qa --provides in .* exited 1: error: rpmdb"):
        rpms.installed_in_base(dk, fail)


# ------------------------------------------------------------------ the real archive
@pytest.mark.online
@pytest.mark.skipif(os.environ.get("COMPATBUILD_ONLINE") != "1",
                    reason="reads Fedora 20's archive over the internet; set COMPATBUILD_ONLINE=1")
def test_refresh_against_the_real_fedora_20_archive(lock: Path) -> None:
    lines: list[str] = []
    pins = rpms.refresh(lock, installed=set(), log=lines.append)
    names = {r.name for r in pins}
    assert set(rpms.PACKAGES) | set(rpms.SYSROOT_PACKAGES) <= names
    assert all(r.url.startswith(rpms.ARCHIVE_REPOS) for r in pins)
    assert next(r for r in pins if r.name == "glibc").filename.startswith("glibc-2.18-")
    assert load(lock).rpms == tuple(pins)
    assert lines[-1].startswith(f"Pinned {len(pins)} Fedora 20 packages (")


def test_refresh_of_one_target_keeps_the_other_targets_pins(lock: Path, repos: tuple[str, str]) -> None:
    """The default lockfile has two targets: each refresh rewrites only its own [[rpm]]s."""
    base = {*BASE, "kernel-headers = 3.19.8-100.fc20"}
    f20 = rpms.refresh(lock, repos=repos, packages=WANTED, installed=base, log=lambda _: None)
    c7 = rpms.refresh(lock, repos=repos, packages=["make"], installed=base, log=lambda _: None,
                      target="centos7")
    assert {r.target for r in f20} == {"fedora20"} and {r.target for r in c7} == {"centos7"}
    assert load(lock).rpms == tuple(f20)  # the default target's, untouched by the second refresh
    assert load(lock, "centos7").rpms == tuple(c7)
    again = rpms.refresh(lock, repos=repos, packages=WANTED, installed=base, log=lambda _: None)
    assert again == f20 and load(lock, "centos7").rpms == tuple(c7)


# ------------------------------------------------------------------ signatures at pin time
def test_refresh_pins_only_packages_signed_by_the_targets_key(
        httpserver: HTTPServer, tmp_path: Path, keys: Keys) -> None:
    """pipeline.refresh_rpm_pins's check: each new pin is fetched and its signature checked
    against the shipped lockfile's rpm_key (here pointed at a session key) before writing."""
    from tasks import pipeline
    from tasks.errors import RpmUnsigned
    from tasks.settings import Settings
    from tests.support.rpmtools import signed_copy, small_rpm

    key = tmp_path / "key.asc"
    key.write_bytes(keys.main.public)
    lock = tmp_path / "rsrc.lock.toml"
    lock.write_text((ROOT / "rsrc.lock.toml").read_text()
                    .replace("https://getfedora.org/static/246110C1.txt", f"file://{key}")
                    .replace("C7C9A9C89153F20183CE7CBA2EB161FA246110C1", keys.main.fingerprint))
    plain = small_rpm(tmp_path, "which", {"usr/bin/which": b"#!/bin/sh\n"})
    signed = signed_copy(plain, tmp_path / "signed.rpm", keys.main, keys.ring.home)
    url = serve_repo(httpserver, "signed", [
        P("which", "2.20-6.fc20", requires=("/bin/sh",), data=signed.read_bytes()),
        P("tzdata", "2013g-1.fc20", arch="noarch", data=plain.read_bytes())])
    settings = Settings(lock=lock, cache=tmp_path / "cache", out=tmp_path / "out", progress="never")
    lf = load(lock)
    said: list[str] = []

    def check(pins: object) -> None:
        pipeline.check_new_pins(lf, lf.key("fedora-20-primary"), settings, pins,  # type: ignore[arg-type]
                                log=said.append)

    pins = rpms.refresh(lock, repos=[url], packages=["which"], installed=["/bin/sh"], sysroot=(),
                        log=lambda _: None, check=check)
    assert [r.name for r in load(lock).rpms] == [r.name for r in pins] == ["which"]
    assert said[-1] == "Verified 1 RPM signature by 'fedora-20-primary'"
    before = lock.read_text()
    with pytest.raises(RpmUnsigned, match=r"rpm tzdata-2013g-1\.fc20\.noarch\.rpm: not signed"):
        rpms.refresh(lock, repos=[url], packages=["which", "tzdata"], installed=["/bin/sh"],
                     sysroot=(), log=lambda _: None, check=check)
    assert lock.read_text() == before  # nothing unsigned is ever pinned
