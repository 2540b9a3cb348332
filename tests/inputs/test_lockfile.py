"""rsrc.lock.toml parsing: the default pins, and every validation error names file, entry, field."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from tasks.errors import LockfileError
from tasks.inputs import lockfile
from tasks.settings import PROJECT_ROOT, Settings

FACTS = Path(__file__).resolve().parents[1] / "data" / "upstream-facts.toml"

GOOD = """
schema = 1
[target]
name = "t"
glibc = "2.18"
[base]
image = "example/base:1"
id = "sha256:{h}"
[[key]]
name = "k"
url = "https://example.invalid/k.asc"
fingerprints = ["{f}"]
[[artifact]]
name = "a"
url = "https://example.invalid/a-1.0.tar.gz"
sha256 = "{h}"
signature_url = "https://example.invalid/a-1.0.tar.gz.sig"
key = "k"
""".format(h="a" * 64, f="B" * 40)


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "rsrc.lock.toml"
    p.write_text(text)
    return p


def test_default_lockfile_fetches_and_checks_exactly_the_public_facts() -> None:
    """What `invoke download` fetches for the default lockfile (``resources()``), and the
    sha256, signatures and fingerprints `invoke verify` holds each file to, are the ones the
    public sources give (tests/data/upstream-facts.toml, a copy of ../shared/upstream-facts.toml)."""
    facts = tomllib.loads(FACTS.read_text())
    by_url = {f["url"]: f for f in facts["artifact"]}
    lf = lockfile.load(PROJECT_ROOT / "rsrc.lock.toml")
    fetched = {r.label: r for r in lf.resources()}
    assert lf.artifacts and len(fetched) > len(lf.artifacts)
    for a in lf.artifacts:
        res = fetched.pop(f"artifact {a.name}")
        fact = by_url.get(res.url)
        assert fact is not None, f"{a.name}: {res.url} is not a URL the public sources name"
        assert res.sha256 == a.sha256 == fact["sha256"] != "", a.name
        assert set(res.alt_urls) <= set(fact.get("alt_urls", [])), a.name
        signed = {fetched.pop(f"{kind} of {a.name}").url
                  for kind in ("signature", "checksums", "checksums signature")
                  if f"{kind} of {a.name}" in fetched}
        assert signed == {u for u in (fact.get("sig_url"), fact.get("checksums_url")) if u}, a.name
        pinned = set(lf.key(a.key).fingerprints) if a.key else set()
        if fact.get("key_fingerprint"):
            assert fact["key_fingerprint"] in pinned, a.name
        elif fact.get("key_fingerprint_candidates"):  # unconfirmed: accept exactly the candidates
            assert pinned == set(fact["key_fingerprint_candidates"]), a.name
    key_facts = {f["url"]: f for f in facts["artifact"] + facts["key"]}
    for k in lf.keys:
        res = fetched.pop(f"key {k.name}")
        known = key_facts.get(res.url, {}).get("sha256") or None
        assert res.sha256 == known, f"key {k.name}: a sha256 no public source gives"  # never invented
    assert fetched == {}  # nothing fetched that the checks above did not account for
    base = by_url["docker.io/library/fedora:20"]
    assert (lf.base.digest, lf.base.id) == (base["digest"], base["image_id"])


def test_the_shipped_lockfile_pins_each_size_a_fact_gives_and_no_other() -> None:
    """Sizes are pinned where the bytes of the pinned sha256 were measured (never invented);
    the others (no public source gives their size) are bounded by the download cap instead."""
    facts = {f["url"]: f for f in tomllib.loads(FACTS.read_text())["artifact"]}
    lf = lockfile.load(PROJECT_ROOT / "rsrc.lock.toml")
    for a in lf.artifacts:
        if a.url in facts:  # (an artifact no fact names fails the test above)
            assert a.size == facts[a.url].get("size"), a.name
    assert {a.name for a in lf.artifacts if a.size is None} == {"make", "cmake", "llvm", "clang", "lld", "rust"}
    assert all(r.max_bytes is None for r in lf.resources() if r.sha256 and r.size is None)  # the cap applies


def test_good_lockfile_parses_and_lists_resources(tmp_path: Path) -> None:
    lf = lockfile.load(write(tmp_path, GOOD))
    labels = [r.label for r in lf.resources()]
    assert labels == ["artifact a", "signature of a", "key k"]
    assert [r.label for r in lf.resources(only="a")] == ["artifact a", "signature of a", "key k"]
    assert lf.base.pull_ref == "example/base:1"


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: t.replace("schema = 1", "schema = 7"), "unknown schema version 7"),
        (lambda t: t.replace('sha256 = "' + "a" * 64 + '"\nsig', 'sha256 = "abc"\nsig'),
         "rsrc.lock.toml: artifact 'a': sha256 must be 64 hex digits"),
        (lambda t: t.replace('name = "a"', 'name = "../../etc"'), "artifact '../../etc': name must be"),
        (lambda t: t.replace("a-1.0.tar.gz\"\nsha", "..\"\nsha"), "url must end in a plain file name"),
        (lambda t: t + '[[artifact]]\nname = "a"\nurl = "https://x.invalid/b"\nsha256 = "' + "b" * 64 + '"\n',
         "artifact 'a': duplicate name"),
        (lambda t: t.replace('key = "k"', 'key = "nope"'), "key 'nope' is not a [[key]]"),
        (lambda t: t.replace('key = "k"\n', ""), "key is required with a signature"),
        (lambda t: t.replace('glibc = "2.18"', 'glibc = "new"'), "target: glibc must be a version"),
        (lambda t: t.replace('id = "sha256:', 'xid = "sha256:'), "base: unknown field 'xid'"),
        (lambda t: t.replace("[target]\n", "[targetx]\n"), "unknown field 'targetx'"),
        (lambda t: t.replace('fingerprints = ["' + "B" * 40 + '"]', "fingerprints = []"),
         "key 'k': fingerprints must be a non-empty list"),
        (lambda t: t.replace("https://example.invalid/a-1.0", "ftp://example.invalid/a-1.0"),
         "must be an http, https or file URL"),
        (lambda t: t.replace('sha256 = "' + "a" * 64 + '"\nsig', "sig"), "artifact 'a': sha256 is missing"),
        (lambda t: t + "[[artifact\n", "not valid TOML"),
    ],
)
def test_bad_lockfile_is_one_clear_error(tmp_path: Path, edit, message: str) -> None:  # type: ignore[no-untyped-def]
    path = write(tmp_path, edit(GOOD))
    with pytest.raises(LockfileError) as err:
        lockfile.load(path)
    text = str(err.value)
    assert message in text
    assert "\n" not in text


def test_missing_lockfile(tmp_path: Path) -> None:
    with pytest.raises(LockfileError, match="lockfile not found"):
        lockfile.load(tmp_path / "nope.toml")


def test_unknown_artifact_lists_what_exists(tmp_path: Path) -> None:
    lf = lockfile.load(write(tmp_path, GOOD))
    with pytest.raises(LockfileError, match=r"no artifact 'zz' \(have: a\)"):
        lf.artifact("zz")


def test_settings_mirror_rewrites_longest_prefix(tmp_path: Path) -> None:
    s = Settings.from_mapping(
        {"cache": str(tmp_path), "mirrors": {"https://a.invalid/": "http://m/", "https://a.invalid/x/": "http://n/"}}
    )
    assert s.mirror("https://a.invalid/x/f.tgz") == "http://n/f.tgz"
    assert s.mirror("https://a.invalid/y/f.tgz") == "http://m/y/f.tgz"
    assert s.mirror("https://b.invalid/f") == "https://b.invalid/f"
    assert s.cache == tmp_path.resolve()


# ------------------------------------------------------------------ issue 8: validation holes

A_URL = 'url = "https://example.invalid/a-1.0.tar.gz"'


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        # `$` matched before a trailing newline: such a pin then quarantined the good file every run
        (lambda t: t.replace('name = "a"', 'name = "a\\n"'), "artifact 'a\\n': name must be"),
        (lambda t: t.replace('sha256 = "' + "a" * 64 + '"\nsig', 'sha256 = "' + "a" * 64 + '\\n"\nsig'),
         "artifact 'a': sha256 must be 64 hex digits"),
        (lambda t: t.replace('fingerprints = ["' + "B" * 40, 'fingerprints = ["' + "B" * 40 + "\\n"),
         "key 'k': fingerprint"),
        # an http(s) URL needs a host
        (lambda t: t.replace(A_URL, 'url = "http:/x/a.tgz"'), "url must be an http, https or file URL with a host"),
        (lambda t: t.replace(A_URL, 'url = "http:///x/a.tgz"'), "url must be an http, https or file URL with a host"),
        # urlparse raised ValueError: a traceback
        (lambda t: t.replace(A_URL, 'url = "http://[::1/a.bin"'), "url is not a valid URL (Invalid IPv6 URL)"),
        (lambda t: t.replace(A_URL, 'url = "http://h:port/a.bin"'), "url is not a valid URL (Port could not"),
        # the field is alt_urls, not 'u'
        (lambda t: t.replace(A_URL, A_URL + "\nalt_urls = [5]"), "artifact 'a': alt_urls must be a list of URLs"),
        (lambda t: t.replace(A_URL, A_URL + '\nalt_urls = ["ftp://m/a"]'), "artifact 'a': alt_urls must be an http"),
        # two entries fetching one URL with different pins: one was dropped silently
        (lambda t: t + '[[artifact]]\nname = "b"\nurl = "https://example.invalid/a-1.0.tar.gz"\nsha256 = "'
         + "b" * 64 + '"\n', "artifact 'b': url https://example.invalid/a-1.0.tar.gz is also artifact 'a', "
         "with another sha256"),
        (lambda t: t.replace(A_URL, A_URL + "\nsize = -1"), "artifact 'a': size must be a whole number"),
        (lambda t: t.replace(A_URL, A_URL + '\nsize = "12"'), "artifact 'a': size must be a whole number"),
        (lambda t: t.replace(A_URL, A_URL + "\nsize = true"), "artifact 'a': size must be a whole number"),
    ],
)
def test_validation_holes_are_one_clear_error(tmp_path: Path, edit, message: str) -> None:  # type: ignore[no-untyped-def]
    path = write(tmp_path, edit(GOOD))
    with pytest.raises(LockfileError) as err:
        lockfile.load(path)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_credentials_in_a_url_are_never_printed(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace(A_URL, 'url = "ftp://user:s3cret@example.invalid/a.tgz"'))
    with pytest.raises(LockfileError) as err:
        lockfile.load(path)
    assert "s3cret" not in str(err.value) and "ftp://***@example.invalid/a.tgz" in str(err.value)


def test_size_is_optional_and_carried_to_the_resource(tmp_path: Path) -> None:
    lf = lockfile.load(write(tmp_path, GOOD.replace(A_URL, A_URL + "\nsize = 1234")))
    [art, sig, key] = list(lf.resources())
    assert lf.artifact("a").size == 1234 and (art.size, art.max_bytes) == (1234, 1234)
    assert sig.size is None and sig.max_bytes == lockfile.UNPINNED_MAX  # unpinned: a small cap
    assert key.max_bytes == lockfile.KEY_MAX
    assert lockfile.load(write(tmp_path, GOOD)).artifact("a").size is None


def test_upper_case_hex_digits_are_accepted_as_lower_case(tmp_path: Path) -> None:
    """A sha256 (or an image digest) in upper case is the same hash: kept lower-case, as the store names it."""
    text = GOOD.replace("a" * 64, "A" * 64).replace('url = "https://example.invalid/k.asc"',
                                                   'url = "https://example.invalid/k.asc"\nsha256 = "' + "C" * 64 + '"')
    lf = lockfile.load(write(tmp_path, text))
    assert lf.artifact("a").sha256 == "a" * 64 and lf.key("k").sha256 == "c" * 64
    assert lf.base.id == "sha256:" + "a" * 64
    with pytest.raises(LockfileError, match=r"artifact 'a': sha256 must be 64 hex digits$"):
        lockfile.load(write(tmp_path, GOOD.replace(f'sha256 = "{"a" * 64}"', f'sha256 = "{"G" * 64}"')))


def test_a_utf8_bom_is_accepted_and_kept_when_the_file_is_rewritten(tmp_path: Path) -> None:
    """Editors on Windows write one; tomllib alone calls it invalid TOML."""
    from tasks.inputs.lockwrite import rewrite

    path = tmp_path / "rsrc.lock.toml"
    path.write_bytes(b"\xef\xbb\xbf" + GOOD.encode())
    assert lockfile.load(path).artifact("a").sha256 == "a" * 64

    def add_size(doc):  # type: ignore[no-untyped-def]
        doc["artifact"][0]["size"] = 5

    assert rewrite(path, add_size)
    assert path.read_bytes().startswith(b"\xef\xbb\xbf") and lockfile.load(path).artifact("a").size == 5


def test_an_artifact_and_a_key_may_still_share_a_name(tmp_path: Path) -> None:
    """The default lockfile does it (llvm, cmake, rust): left as it is, on purpose."""
    lf = lockfile.load(write(tmp_path, GOOD.replace('name = "a"', 'name = "k"')))
    assert lf.artifact("k").key == "k" and lf.key("k").name == "k"


# ----------------------------------------------------------------------------- arches (issue 15)

TWO = """
schema = 2
default_target = "c7"
[targets.c7]
glibc = "2.17"
[targets.c7.base]
image = "example/base:1"
id = "sha256:{h}"
[targets.a64]
glibc = "2.17"
arch = "aarch64"
cross_from = "c7"
[targets.a64.base]
image = "example/base:1"
id = "sha256:{h}"
""".format(h="a" * 64)


def test_the_shipped_aarch64_target_cross_links_from_centos7_and_has_its_own_key() -> None:
    lf = lockfile.load(PROJECT_ROOT / "rsrc.lock.toml", "centos7-aarch64")
    t = lf.target
    assert (t.glibc, t.arch, t.cross_from, t.rpm_key) == ("2.17", "aarch64", "centos7", "centos-7-aarch64")
    assert all("/altarch/7.9.2009/" in r and r.endswith("/aarch64/") for r in t.repos)
    facts = {k["name"]: k for k in tomllib.loads(FACTS.read_text())["key"]}
    assert lf.key("centos-7-aarch64").fingerprints == (facts["centos-7-aarch64"]["key_fingerprint"],)
    assert lf.key("centos-7-aarch64").fingerprints != lf.key("centos-7").fingerprints  # AltArch signs its own
    assert lockfile.load(PROJECT_ROOT / "rsrc.lock.toml", "centos7").target.arch == "x86_64"


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: t.replace('arch = "aarch64"', 'arch = "riscv64"'), "arch must be one of x86_64, aarch64"),
        (lambda t: t.replace('glibc = "2.17"\narch', 'glibc = "2.16"\narch'),
         "target 'a64': glibc 2.16 predates aarch64 (its first glibc is 2.17)"),
        (lambda t: t.replace('cross_from = "c7"', 'cross_from = "nope"'), "cross_from 'nope' is not a target"),
        (lambda t: t.replace('cross_from = "c7"', 'cross_from = "a64"'),
         "cross_from 'a64' must be an x86_64 target that builds natively"),
        (lambda t: t.replace('[targets.c7]\nglibc = "2.17"\n', '[targets.c7]\nglibc = "2.17"\ncross_from = "a64"\n'),
         "target 'c7': cross_from is for a target of another arch"),
    ],
)
def test_a_bad_arch_or_cross_from_is_one_clear_error(tmp_path: Path, edit, message: str) -> None:  # type: ignore[no-untyped-def]
    assert lockfile.load(write(tmp_path, TWO), "a64").target.cross_from == "c7"
    with pytest.raises(LockfileError) as err:
        lockfile.load(write(tmp_path, edit(TWO)))
    assert message in str(err.value) and "\n" not in str(err.value)
