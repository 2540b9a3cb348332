"""Pin a target's packages (Fedora 20, CentOS 7) for its rpms stage: resolve, then rewrite [[rpm]].

``refresh`` reads each repository's repomd.xml and the primary metadata it names (checksum
checked), resolves the wanted packages' closure and writes URL + sha256 pins. What the base
image already meets is left out, by name, provide or file *and version* (``rpm -Uvh``
checks versions too: a pinned glibc needing ``glibc-common = 2.18-19.fc20`` pins it when
the base has 2.18-11). Sysroot packages are pinned even when installed: the sysroot is
unpacked from their files. Only :func:`installed_in_base` runs anything (rpm in the base
image, through the Docker client it is given). Version comparison
(:func:`rpmvercmp`, :func:`evrcmp`, :func:`satisfies`) lives in :mod:`tasks.inputs.rpmver`.
Slightly over 300 lines: repodata reading and the closure resolver are one job (each
requirement is answered against the metadata just read).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import lzma
import tomllib
import xml.etree.ElementTree as ET
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import cmp_to_key
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Protocol
from urllib.parse import urljoin

from tasks.errors import DockerError, HashMismatch, RpmError
from tasks.inputs import http, lockfile
from tasks.inputs.lockfile import Rpm
from tasks.inputs.lockwrite import rewrite
from tasks.inputs.rpmver import EQ, FLAGS, Dep, Evr, evrcmp, parse_evr, satisfies
from tasks.inputs.rpmver import rpmvercmp as rpmvercmp  # re-exported: tests use tasks.inputs.rpmpins.rpmvercmp

if TYPE_CHECKING:  # tomlkit is imported where it is used
    import tomlkit

PACKAGES = ("coreutils", "gcc", "gcc-c++", "make", "which", "tar", "xz", "gzip", "python",
            "sed", "grep", "gawk", "findutils", "diffutils")
SYSROOT_PACKAGES = ("glibc", "glibc-devel", "glibc-headers", "kernel-headers", "libgcc")
ARCHIVE_REPOS = (
    "https://archives.fedoraproject.org/pub/archive/fedora/linux/releases/20/Everything/x86_64/os/",
    "https://archives.fedoraproject.org/pub/archive/fedora/linux/updates/20/x86_64/",
)
ARCHES = ("x86_64", "noarch")  # what a target's pins may be; an aarch64 target's: ("aarch64", "noarch")
FetchBytes = Callable[[str], bytes]
Log = Callable[[str], None]
INSTALLED_QUERIES: tuple[tuple[str, ...], ...] = (
    ("rpm", "-qa", "--provides"),
    ("rpm", "-qal"),
    ("rpm", "-qa", "--qf", "%{NAME} = %|EPOCH?{%{EPOCH}:}:{}|%{VERSION}-%{RELEASE}\n"),
)
_NS = {"c": "http://linux.duke.edu/metadata/common", "rpm": "http://linux.duke.edu/metadata/rpm",
       "repo": "http://linux.duke.edu/metadata/repo"}
_NOISE = ("(contains no files)", "warning:", "error:")
_XML_BASE = "{http://www.w3.org/XML/1998/namespace}base"
_HASHES = {"sha": "sha1", "sha1": "sha1", "sha224": "sha224", "sha256": "sha256",
           "sha384": "sha384", "sha512": "sha512"}


@dataclass(frozen=True, eq=False)
class Package:
    """One package in a repository's primary metadata."""

    name: str
    arch: str
    evr: Evr
    location: str  # href relative to ``base``
    base: str  # the repository base URL, or the package's xml:base
    checksum: str
    checksum_type: str  # a hashlib name: "sha256" in Fedora 20, "sha1" in older repositories
    size: int
    provides: tuple[Dep, ...]
    requires: tuple[Dep, ...]  # without rpmlib(...) entries
    files: tuple[str, ...]  # the files primary lists (*bin/*, /etc/*)

    @property
    def nevra(self) -> str:
        return f"{self.name}-{self.evr}.{self.arch}"

    @property
    def url(self) -> str:
        return urljoin(self.base, self.location)


def load_repo(base_url: str, fetch_bytes: FetchBytes) -> list[Package]:
    """Read ``repodata/repomd.xml`` and the primary it names (checksum checked) at ``base_url``."""
    base = base_url if base_url.endswith("/") else base_url + "/"
    md_url = base + "repodata/repomd.xml"
    try:
        root = ET.fromstring(fetch_bytes(md_url))
    except ET.ParseError as exc:
        raise RpmError(f"{md_url}: not valid XML: {exc}") from None
    data = root.find("repo:data[@type='primary']", _NS)
    loc = data.find("repo:location", _NS) if data is not None else None
    summ = data.find("repo:checksum", _NS) if data is not None else None
    if loc is None or summ is None or not loc.get("href") or not summ.text:
        raise RpmError(f"{md_url}: no primary metadata with a location and checksum")
    url = urljoin(base, loc.get("href", ""))
    blob = fetch_bytes(url)
    algo = _HASHES.get(summ.get("type", ""))
    if algo is None:
        raise RpmError(f"{md_url}: unsupported checksum type {summ.get('type')!r} for primary")
    got, want = hashlib.new(algo, blob).hexdigest(), summ.text.strip().lower()
    if got != want:
        raise HashMismatch(f"{url}: {algo} mismatch: repomd.xml lists {want}, got {got}")
    try:
        return list(_parse_primary(_decompress(blob), base))
    except (ET.ParseError, OSError, EOFError, lzma.LZMAError, ValueError) as exc:
        raise RpmError(f"{url}: unreadable primary metadata: {exc}") from None


def _decompress(blob: bytes) -> IO[bytes]:
    """A reader of the XML inside gzip or xz (by magic number), or of plain XML."""
    raw = io.BytesIO(blob)
    if blob[:2] == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=raw)  # type: ignore[return-value]
    if blob[:6] == b"\xfd7zXZ\x00":
        return lzma.LZMAFile(raw)
    return raw


def _parse_primary(stream: IO[bytes], base: str) -> Iterable[Package]:
    """Stream <package> elements (Everything's primary is ~100 MB unpacked), clearing as we go."""
    c, r = f"{{{_NS['c']}}}", f"{{{_NS['rpm']}}}"
    root: ET.Element | None = None
    for event, el in ET.iterparse(stream, events=("start", "end")):
        if root is None:
            root = el
        if event != "end" or el.tag != c + "package":
            continue
        ver, loc, summ, size = (el.find(c + t) for t in ("version", "location", "checksum", "size"))
        if ver is None or loc is None or summ is None:
            raise ValueError(f"package {el.findtext(c + 'name')!r} lacks version/location/checksum")
        yield Package(
            name=el.findtext(c + "name", ""),
            arch=el.findtext(c + "arch", ""),
            evr=Evr(int(ver.get("epoch") or 0), ver.get("ver", ""), ver.get("rel", "")),
            location=loc.get("href", ""),
            base=loc.get(_XML_BASE) or base,
            checksum=(summ.text or "").strip().lower(),
            checksum_type=_HASHES.get(summ.get("type", ""), summ.get("type", "")),
            size=int(size.get("package", 0)) if size is not None else 0,
            provides=_deps(el.find(f"{c}format/{r}provides")),
            requires=tuple(d for d in _deps(el.find(f"{c}format/{r}requires"))
                           if not d.name.startswith("rpmlib(")),
            files=tuple(f.text for f in el.iterfind(f"{c}format/{c}file") if f.text),
        )
        if root is not None:
            root.clear()


def _deps(parent: ET.Element | None) -> tuple[Dep, ...]:
    out: dict[Dep, None] = {}
    for e in parent if parent is not None else ():
        flags = FLAGS.get(e.get("flags", ""), 0)
        evr = Evr(int(e.get("epoch") or 0), e.get("ver", ""), e.get("rel", "")) if flags else None
        out[Dep(e.get("name", ""), flags, evr)] = None
    return tuple(out)


def parse_installed(lines: Iterable[str]) -> dict[str, list[Dep]]:
    """Index rpm's ``name``, ``name = E:V-R`` and ``/file`` lines by name."""
    have: dict[str, list[Dep]] = {}
    for line in lines:
        s = line.strip()
        parts = s.split(" ")
        if len(parts) == 3 and parts[1] in FLAGS:
            have.setdefault(parts[0], []).append(Dep(parts[0], FLAGS[parts[1]],
                                                     parse_evr(parts[2])))
        elif s and not s.startswith(_NOISE):
            have.setdefault(s, []).append(Dep(s))
    return have


class Runs(Protocol):
    """What :func:`installed_in_base` needs of the Docker client: run a command in an image."""

    def run(self, image: str, command: Sequence[str], **kwargs: Any) -> tuple[int, str]: ...


def installed_in_base(dk: Runs, image: str) -> set[str]:
    """Provides (versioned), files and ``name = E:V-R`` of every package in ``image``."""
    found: set[str] = set()
    for cmd in INSTALLED_QUERIES:
        status, out = dk.run(image, cmd, network_disabled=True)
        if status != 0:
            last = out.strip().splitlines()[-1:] or ["no output"]
            raise DockerError(f"{' '.join(cmd[:3])} in {image} exited {status}: {last[0]}")
        found.update(k for line in out.splitlines()
                     if (k := line.strip()) and not k.startswith(_NOISE))
    return found


_EVR_KEY = cmp_to_key(evrcmp)


class _Index:
    """Every package of the repositories of ``arches`` (x86_64, noarch), by name, provide and listed file."""

    def __init__(self, repos: Sequence[Sequence[Package]], arches: Sequence[str] = ARCHES) -> None:
        self.by_provide: dict[str, list[tuple[Package, Dep]]] = {}
        self.by_file: dict[str, list[Package]] = {}
        for p in (p for repo in repos for p in repo if p.arch in arches):
            for d in p.provides or (Dep(p.name, EQ, p.evr),):
                self.by_provide.setdefault(d.name, []).append((p, d))
            for f in p.files:
                self.by_file.setdefault(f, []).append(p)

    def providers(self, req: Dep) -> list[Package]:
        found = {id(p): p for p, d in self.by_provide.get(req.name, ()) if satisfies(d, req)}
        found.update((id(p), p) for p in self.by_file.get(req.name, ()) if req.evr is None)
        return list(found.values())

    def best(self, req: Dep, *, exact_name: bool = False) -> Package | None:
        """An exact-name provider first, then the shortest name; the newest EVR of that name."""
        cands = [p for p in self.providers(req) if not exact_name or p.name == req.name]
        if not cands:
            return None
        name = min((p.name != req.name, len(p.name), p.name) for p in cands)[2]
        # max() keeps the first of equals: reversed, a tie goes to the later repository
        same = [p for p in reversed(cands) if p.name == name]
        return max(same, key=lambda p: _EVR_KEY(p.evr))


def resolve(
    repos: Sequence[Sequence[Package]],
    wanted: Sequence[str],
    *,
    installed_provides: Iterable[str] = frozenset(),
    force: Sequence[str] = (),
    arches: Sequence[str] = ARCHES,
) -> list[Package]:
    """The dependency closure of ``wanted`` minus what the installed provides already meet.

    ``installed_provides`` holds rpm's lines: ``name``, ``name = E:V-R`` and file paths; a
    bare name meets any version. Names in ``force`` are pinned (newest) even if installed.
    """
    idx = _Index(repos, arches)
    have = parse_installed(installed_provides)
    chosen: dict[str, Package] = {}
    todo: deque[tuple[Dep, str]] = deque()

    def add(p: Package, why: str) -> None:
        other = chosen.setdefault(p.name, p)
        if other is not p:
            raise RpmError(f"{why} needs {p.nevra}, but {other.nevra} is already chosen")
        todo.extend((r, p.nevra) for r in p.requires)

    for name in dict.fromkeys(force):
        p = idx.best(Dep(name), exact_name=True)
        if p is None:
            raise RpmError(f"no x86_64 or noarch package named '{name}' (a sysroot package)")
        add(p, "the sysroot")
    todo.extend((Dep(n), "the wanted list") for n in dict.fromkeys(wanted) if n not in force)
    while todo:
        req, who = todo.popleft()
        cands = idx.providers(req)
        if any(chosen.get(p.name) is p for p in cands):
            continue
        if any(satisfies(d, req) for d in have.get(req.name, ())):
            continue
        best = idx.best(req)
        if best is None:
            raise RpmError(f"nothing provides '{req}' needed by {who} "
                           "(x86_64/noarch only; files are looked up in primary.xml only)")
        add(best, who)
    return sorted(chosen.values(), key=lambda p: (p.name, p.arch))


def refresh(
    lock_path: Path,
    *,
    repos: Sequence[str] = ARCHIVE_REPOS,
    packages: Sequence[str] = PACKAGES + SYSROOT_PACKAGES,
    installed: Iterable[str],
    fetch_bytes: FetchBytes = http.get_bytes,
    log: Log = print,
    sysroot: Sequence[str] = SYSROOT_PACKAGES,
    target: str | None = None,
    check: Callable[[Sequence[Rpm]], None] | None = None,
    arches: Sequence[str] = ARCHES,
) -> list[Rpm]:
    """Resolve ``packages`` against ``repos`` and rewrite ``target``'s ``[[rpm]]`` tables.

    In a lockfile with several targets the new tables say ``target = "<name>"`` and the
    other targets' pins are kept as they are. ``check`` is given the new pins before the
    lockfile is written (the pipeline downloads them and checks their signatures there);
    when it raises, the lockfile is left as it was.
    """
    current = lockfile.load(lock_path, target)  # refuse to edit a lockfile that is already broken
    name = current.target.name
    scoped = len(current.targets) > 1
    loaded = []
    for base in repos:
        log(f"Reading repository metadata from {base}")
        loaded.append(load_repo(base, fetch_bytes))
    chosen = resolve(loaded, packages, installed_provides=installed,
                     force=[n for n in packages if n in sysroot], arches=arches)
    for p in chosen:
        if p.checksum_type != "sha256":
            raise RpmError(f"{p.nevra}: the repository lists only a {p.checksum_type} checksum, "
                           "and the lockfile pins sha256")
    pins = [Rpm(p.name, p.url, p.checksum, name if scoped else "") for p in chosen]

    if check is not None:
        check(pins)
    default = str(tomllib.loads(lock_path.read_text(encoding="utf-8-sig")).get("default_target") or name)

    def edit(doc: tomlkit.TOMLDocument) -> None:
        import tomlkit

        aot = tomlkit.aot()
        for old in doc.get("rpm", []):  # other targets' pins stay
            if str(old.get("target") or default) != name:
                aot.append(old)
        for p, pin in zip(chosen, pins, strict=True):
            t = tomlkit.table()
            if scoped:
                t["target"] = name
            t.update({"name": pin.name, "url": pin.url, "sha256": pin.sha256})
            t.comment(f"{p.nevra}, {p.size / 1e6:.1f} MB")
            aot.append(t)
        if len(aot):
            doc["rpm"] = aot
        elif "rpm" in doc:
            del doc["rpm"]

    rewrite(lock_path, edit)  # under the lockfile's lock; comments and mode kept
    log(f"Pinned {len(pins)} packages for {name} ({sum(p.size for p in chosen) / 1e6:.1f} MB)")
    return pins

