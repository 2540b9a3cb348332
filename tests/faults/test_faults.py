"""Fault injection (issue 8): kill -9 at seeded points, a misbehaving server, concurrent runs,
a full and a read-only cache. Marker ``faults``; runs in the normal suite (``nox``, .ci/run).

Every scenario ends in success or in a one-line error with its exit code, within a bounded
time, and leaves no bad cache entry: every file under ``sha256/`` hashes to its name. The
kill points come from ``random.Random(seed)``; the seed is printed, and
``COMPATBUILD_FAULT_SEED=<seed>`` replays a run. The module prints a summary table at the
end (the figures in docs/hardening.md): ``pytest -m faults tests/faults/test_faults.py``.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tasks.errors import DownloadError, HashMismatch, LockfileError, OutputError, SizeError
from tasks.settings import PROJECT_ROOT

pytestmark = [pytest.mark.faults, pytest.mark.timeout(120)]
HEAD = ('schema = 1\n[target]\nname = "t"\nglibc = "2.18"\n[base]\nimage = "fedora:20"\n'
        f'id = "sha256:{"0" * 64}"\n')
ROWS: list[tuple[str, str, str]] = []  # (what, outcome, command)
CMD = "pytest -m faults tests/faults/test_faults.py"


def payload(n: int, seed: bytes) -> bytes:
    block = hashlib.sha256(seed).digest() * 2048
    return (block * (n // len(block) + 1))[:n]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module", autouse=True)
def summary_table(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if not ROWS:
        return
    lines = ["| fault or bad input | outcome | command |", "|---|---|---|"]
    lines += [f"| {w} | {o} | `{c}` |" for w, o, c in ROWS]
    text = "\n".join(lines)
    out = os.environ.get("COMPATBUILD_FAULTS_SUMMARY")
    if out:
        Path(out).write_text(text + "\n")
    shout(request.config, "\nfault-injection summary:\n" + text)


def shout(config: pytest.Config, text: str) -> None:
    """Print past pytest's capture: the seed and the table belong in every run's output."""
    capman = config.pluginmanager.getplugin("capturemanager")
    with capman.global_and_fixture_disabled() if capman else contextlib.nullcontext():
        print(text, flush=True)


class Server:
    """A threading loopback HTTP server: files by path (Range honoured, optionally throttled),
    or a scripted behaviour per path; counts requests per path."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.rate = 0.0  # bytes per second for a file, 0: as fast as it goes
        self.scripts: dict[str, Callable[[http.server.BaseHTTPRequestHandler, int], None]] = {}
        self.count: Counter[str] = Counter()
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 - the http.server name
                owner.count[self.path] += 1
                try:
                    if self.path in owner.scripts:
                        owner.scripts[self.path](self, owner.count[self.path])
                    else:
                        owner.serve(self)
                except OSError:
                    pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def serve(self, h: http.server.BaseHTTPRequestHandler) -> None:
        data = self.files.get(h.path)
        if data is None:
            h.send_response(404)
            h.send_header("Content-Length", "0")
            h.end_headers()
            return
        m = re.fullmatch(r"bytes=(\d+)-", h.headers.get("Range", ""))
        start = int(m.group(1)) if m else 0
        if start >= len(data) and m:
            h.send_response(416)
            h.send_header("Content-Range", f"bytes */{len(data)}")
            h.send_header("Content-Length", "0")
            h.end_headers()
            return
        h.send_response(206 if m else 200)
        if m:
            h.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        h.send_header("Content-Length", str(len(data) - start))
        h.end_headers()
        step = 1 << 16
        for i in range(start, len(data), step):
            h.wfile.write(data[i:i + step])
            if self.rate:
                time.sleep(step / self.rate)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server() -> Iterator[Server]:
    s = Server()
    yield s
    s.close()


def artifact(name: str, url: str, data: bytes, extra: str = "") -> str:
    return f'[[artifact]]\nname = "{name}"\nurl = "{url}"\nsha256 = "{sha(data)}"\n{extra}'


def invoke(*args: str, cache: Path, env: dict[str, str] | None = None,
           timeout: float = 60) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("INVOKE_COMPATBUILD_")}
    full.update({"INVOKE_COMPATBUILD_CACHE": str(cache), "INVOKE_COMPATBUILD_PROGRESS": "never", **(env or {})})
    return subprocess.run([sys.executable, "-m", "invoke", *args], cwd=PROJECT_ROOT, env=full,  # noqa: S603
                          capture_output=True, text=True, timeout=timeout)


def one_line(r: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in r.stderr, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("compatbuild: "), lines
    return lines[0]


def entries_lost_or_bad(cache: Path) -> list[str]:
    """Every file under sha256/ must hash to its name; anything else is listed."""
    bad = []
    for p in (cache / "sha256").rglob("*"):
        if p.is_file() and (not re.fullmatch(r"[0-9a-f]{64}", p.name) or sha(p.read_bytes()) != p.name):
            bad.append(str(p))
    return bad


# ------------------------------------------------------------------ kill -9 at seeded points

KILL_SCRIPT = """
import sys
from pathlib import Path
from tasks.inputs import download, pins, verify
from tasks.inputs.lockfile import load
from tasks.settings import Settings
from tasks.store import Store
op, lock_path, cache = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
s = Settings(lock=lock_path, cache=cache, out=cache, jobs=3, progress="never")
q = lambda _m: None
if op in ("download", "lock"):
    download.fetch_all(load(lock_path), s, log=q)
if op in ("verify", "lock"):
    verify.verify_all(load(lock_path), Store(cache), log=q)
if op == "lock":
    pins.record_sizes(lock_path, Store(cache), log=q)
print("done")
"""


def test_kill_9_at_seeded_points_then_a_clean_rerun_succeeds(tmp_path: Path, server: Server,
                                                            pytestconfig: pytest.Config) -> None:
    from tasks.inputs import download, pins, verify
    from tasks.inputs.lockfile import load
    from tasks.settings import Settings
    from tasks.store import Store

    seed = int(os.environ.get("COMPATBUILD_FAULT_SEED") or time.time_ns() % 1_000_000)
    shout(pytestconfig, f"\nfault seed: {seed} (replay with COMPATBUILD_FAULT_SEED={seed})")
    rng = random.Random(seed)
    files = {"/big.tar.xz": payload(6_000_000, b"big"), "/mid.tar.gz": payload(900_000, b"mid"),
             **{f"/s{i}.tgz": payload(20_000 + i, b"s%d" % i) for i in range(4)}}
    server.files.update(files)
    server.rate = 12_000_000.0  # the big file takes about half a second
    body = "".join(artifact(p.strip("/").split(".")[0], server.url + p, d) for p, d in files.items())
    lock_path, cache = tmp_path / "rsrc.lock.toml", tmp_path / "cache"
    original = HEAD + body
    settings = Settings(lock=lock_path, cache=cache, out=cache, jobs=3, progress="never")
    points, killed = 32, 0
    for n in range(points):
        op = rng.choice(["download", "download", "verify", "lock"])
        lock_path.write_text(original)
        store = Store(cache)
        if op == "download" or rng.random() < 0.5:  # give the killed run bytes to fetch
            for d in files.values():
                if rng.random() < 0.6:
                    store.path(sha(d)).unlink(missing_ok=True)
        if op != "download":  # verify and lock need the files; their stamps go
            download.fetch_all(load(lock_path), settings, log=lambda _m: None)
            for st in (cache / "verified").glob("*.json"):
                st.unlink()
        delay = rng.uniform(0.02, 0.9)
        proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, op, str(lock_path), str(cache)],  # noqa: S603
                                cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(delay)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            killed += 1
        proc.communicate(timeout=30)
        # whatever the kill interrupted: the lockfile loads, and a clean re-run succeeds
        lock = load(lock_path)
        download.fetch_all(lock, settings, log=lambda _m: None)
        verify.verify_all(lock, Store(cache), log=lambda _m: None)
        pins.record_sizes(lock_path, Store(cache), log=lambda _m: None)
        assert all(a.size is not None for a in load(lock_path).artifacts)
        assert entries_lost_or_bad(cache) == [], f"seed {seed}, point {n} ({op} after {delay:.2f} s)"
        assert {p.name for p in (cache / "sha256").rglob("*") if p.is_file()} >= {sha(d) for d in files.values()}
    ROWS.append((f"kill -9 at {points} seeded points across download, verify, lock (seed {seed}; "
                 f"{killed} killed mid-run)", f"{points}/{points} clean re-runs succeeded; 0 entries lost or bad",
                 f"COMPATBUILD_FAULT_SEED={seed} {CMD} -k kill_9"))


# ------------------------------------------------------------------ a misbehaving server

def _head(h: http.server.BaseHTTPRequestHandler, code: int, headers: dict[str, str]) -> None:
    h.send_response(code)
    for k, v in headers.items():
        h.send_header(k, v)
    h.end_headers()


def _reset_mid_body(data: bytes) -> Callable[[http.server.BaseHTTPRequestHandler, int], None]:
    def play(h: http.server.BaseHTTPRequestHandler, n: int) -> None:
        if n == 1:
            _head(h, 200, {"Content-Length": str(len(data))})
            h.wfile.write(data[: len(data) // 3])
            h.wfile.flush()
            h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            h.wfile.close()  # the socket closes (with an RST) only once its files are closed too
            h.rfile.close()
            h.connection.close()
            h.close_connection = True
            return
        start = int(h.headers.get("Range", "bytes=0-")[6:-1])
        _head(h, 206, {"Content-Length": str(len(data) - start),
                       "Content-Range": f"bytes {start}-{len(data) - 1}/{len(data)}"})
        h.wfile.write(data[start:])
    return play


def _stall(h: http.server.BaseHTTPRequestHandler, n: int) -> None:
    _head(h, 200, {"Content-Length": str(len(DATA))})
    h.wfile.write(b"x" * 10)
    h.wfile.flush()
    time.sleep(20)


def _drip(h: http.server.BaseHTTPRequestHandler, n: int) -> None:
    _head(h, 200, {"Content-Length": str(len(DATA))})
    for _ in range(100):
        h.wfile.write(b"d")
        h.wfile.flush()
        time.sleep(0.25)


def _length_too_long(data: bytes) -> Callable[[http.server.BaseHTTPRequestHandler, int], None]:
    def play(h: http.server.BaseHTTPRequestHandler, n: int) -> None:  # says more than it sends, once
        m = re.fullmatch(r"bytes=(\d+)-", h.headers.get("Range", ""))
        start = int(m.group(1)) if m else 0
        if n == 1:
            _head(h, 200, {"Content-Length": str(len(data) + 5000), "Connection": "close"})
            h.wfile.write(data[:4000])
            h.close_connection = True
            return
        _head(h, 206, {"Content-Length": str(len(data) - start),
                       "Content-Range": f"bytes {start}-{len(data) - 1}/{len(data)}"})
        h.wfile.write(data[start:])
    return play


def _length_too_short(data: bytes) -> Callable[[http.server.BaseHTTPRequestHandler, int], None]:
    def play(h: http.server.BaseHTTPRequestHandler, n: int) -> None:
        _head(h, 200, {"Content-Length": str(len(data) - 100)})
        h.wfile.write(data)
    return play


def _busy_then_ok(data: bytes) -> Callable[[http.server.BaseHTTPRequestHandler, int], None]:
    def play(h: http.server.BaseHTTPRequestHandler, n: int) -> None:
        if n == 1:
            _head(h, 500, {"Content-Length": "0"})
            return
        _head(h, 200, {"Content-Length": str(len(data))})
        h.wfile.write(data)
    return play


def _always_416(data: bytes) -> Callable[[http.server.BaseHTTPRequestHandler, int], None]:
    def play(h: http.server.BaseHTTPRequestHandler, n: int) -> None:
        if h.headers.get("Range"):
            _head(h, 416, {"Content-Range": "bytes */1", "Content-Length": "0"})
            return
        _head(h, 200, {"Content-Length": str(len(data))})
        h.wfile.write(data)
    return play


def _range_ignored(data: bytes) -> Callable[[http.server.BaseHTTPRequestHandler, int], None]:
    def play(h: http.server.BaseHTTPRequestHandler, n: int) -> None:
        _head(h, 200, {"Content-Length": str(len(data))})
        h.wfile.write(data)
    return play


def _redirect(to: str) -> Callable[[http.server.BaseHTTPRequestHandler, int], None]:
    def play(h: http.server.BaseHTTPRequestHandler, n: int) -> None:
        _head(h, 302, {"Location": to, "Content-Length": "0"})
    return play


def _endless(h: http.server.BaseHTTPRequestHandler, n: int) -> None:
    _head(h, 200, {"Connection": "close"})
    for _ in range(10_000):
        h.wfile.write(b"e" * 65536)


DATA = payload(50_000, b"server")
# name, script, stale .part bytes, expected exit code (0: success), text in the error
SCENARIOS: list[tuple[str, Callable[[Server], Callable[[http.server.BaseHTTPRequestHandler, int], None]],
                      bytes, int, str]] = [
    ("connection reset mid-body", lambda s: _reset_mid_body(DATA), b"", 0, ""),
    ("stalled body (no byte for 20 s)", lambda s: _stall, b"", DownloadError.exit_code, "deadline"),
    ("drip, one byte every 0.25 s", lambda s: _drip, b"", DownloadError.exit_code, "deadline"),
    ("Content-Length too long (body cut short), no size pinned", lambda s: _length_too_long(DATA), b"", 0, ""),
    ("Content-Length too long, size pinned", lambda s: _length_too_long(DATA), b"", SizeError.exit_code,
     "more than the 50000 bytes the lockfile pins"),
    ("Content-Length too short", lambda s: _length_too_short(DATA), b"", HashMismatch.exit_code,
     "sha256 mismatch"),
    ("500 then 200", lambda s: _busy_then_ok(DATA), b"", 0, ""),
    ("416 for any resume", lambda s: _always_416(DATA), DATA[:100], 0, ""),
    ("Range ignored (200 with the whole file)", lambda s: _range_ignored(DATA), b"stale", 0, ""),
    ("redirect loop", lambda s: _redirect("/x"), b"", DownloadError.exit_code, "redirects"),
    ("redirect to another scheme (file://)", lambda s: _redirect("file:///etc/passwd"), b"",
     DownloadError.exit_code, "file:///etc/passwd"),
    ("endless body, pinned size", lambda s: _endless, b"", SizeError.exit_code, "longer than"),
]


@pytest.mark.parametrize(("name", "script", "stale", "code", "text"), SCENARIOS, ids=[s[0] for s in SCENARIOS])
def test_a_misbehaving_server_ends_in_success_or_one_line(
        tmp_path: Path, server: Server, name: str,
        script: Callable[[Server], Callable[[http.server.BaseHTTPRequestHandler, int], None]],
        stale: bytes, code: int, text: str) -> None:
    from tasks.store import Store

    server.scripts["/x"] = script(server)
    lock = tmp_path / "rsrc.lock.toml"
    pin = "" if "no size pinned" in name else f"size = {len(DATA)}\n"
    lock.write_text(HEAD + artifact("x", server.url + "/x", DATA, pin))
    cache = tmp_path / "cache"
    if stale:
        Store(cache).ensure()
        Store(cache).partial(server.url + "/x").write_bytes(stale)
    started = time.monotonic()
    r = invoke("download", "--lock", str(lock), cache=cache, env={"INVOKE_COMPATBUILD_DEADLINE": "3"})
    took = time.monotonic() - started
    assert took < 20, name
    if code == 0:
        assert r.returncode == 0, (name, r.stderr)
        assert Store(cache).path(sha(DATA)).read_bytes() == DATA
        outcome = f"success after {server.count['/x']} requests"
    else:
        line = one_line(r)
        assert r.returncode == code and text in line, (name, r.returncode, line)
        outcome = f"one-line error, exit {code}"
    assert entries_lost_or_bad(cache) == []
    ROWS.append((f"server: {name}", f"{outcome} ({took:.1f} s)", f"{CMD} -k misbehaving"))


# ------------------------------------------------------------------ bad inputs, rejected

BAD_LOCKS = [
    ('name with a trailing newline', lambda u: artifact("a\\n", u, DATA), LockfileError.exit_code),
    ("sha256 with a trailing newline", lambda u: artifact("a", u, DATA).replace(sha(DATA), sha(DATA) + "\\n"),
     LockfileError.exit_code),
    ("URL http://[::1/a.bin", lambda u: artifact("a", "http://[::1/a.bin", DATA), LockfileError.exit_code),
    ("URL http:///x (no host)", lambda u: artifact("a", "http:///x/a.bin", DATA), LockfileError.exit_code),
    ("alt_urls = [5]", lambda u: artifact("a", u, DATA, "alt_urls = [5]\n"), LockfileError.exit_code),
    ("one URL, two pins", lambda u: artifact("a", u, DATA) + artifact("b", u, b"other"), LockfileError.exit_code),
    ("file:///dev/zero", lambda u: artifact("a", "file:///dev/zero", DATA), SizeError.exit_code),
    ("Content-Length above the pinned size", lambda u: artifact("a", u, DATA, "size = 10\n"), SizeError.exit_code),
]


@pytest.mark.parametrize(("name", "make", "code"), BAD_LOCKS, ids=[b[0] for b in BAD_LOCKS])
def test_bad_inputs_are_one_line_with_their_exit_code(
        tmp_path: Path, server: Server, name: str, make: Callable[[str], str], code: int) -> None:
    server.files["/a.bin"] = DATA
    lock = tmp_path / "rsrc.lock.toml"
    lock.write_text(HEAD + make(server.url + "/a.bin"))
    r = invoke("download", "--lock", str(lock), cache=tmp_path / "cache", timeout=30)
    one_line(r)
    assert r.returncode == code, (name, r.stderr)
    ROWS.append((f"bad input: {name}", f"rejected, exit {code}", f"{CMD} -k bad_inputs"))


# ------------------------------------------------------------------ concurrent runs

def test_eight_processes_on_one_cache_fetch_each_input_once(tmp_path: Path, server: Server) -> None:
    files = {"/big.tar.xz": payload(3_000_000, b"big8"), **{f"/f{i}.tgz": payload(30_000, b"f%d" % i)
                                                           for i in range(5)}}
    server.files.update(files)
    server.rate = 20_000_000.0
    lock = tmp_path / "rsrc.lock.toml"
    lock.write_text(HEAD + "".join(artifact(p.strip("/").split(".")[0], server.url + p, d) for p, d in files.items()))
    cache = tmp_path / "cache"
    procs = [subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, "download", str(lock), str(cache)],  # noqa: S603
                              cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(8)]
    outs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0] * 8, [e for _o, e in outs]
    assert {p: server.count[p] for p in files} == {p: 1 for p in files}
    assert entries_lost_or_bad(cache) == []
    ROWS.append(("8 concurrent `download` processes on one cache (6 inputs)",
                 "8/8 succeeded; each input requested once", f"{CMD} -k eight"))


# ------------------------------------------------------------------ a full and a read-only disk

@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], check=True)  # noqa: S603, S607
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)  # noqa: S603, S607


def _remount(mnt: Path, opts: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{opts}", str(mnt)], check=True)  # noqa: S603, S607


def test_a_full_disk_is_one_line_naming_the_path_and_the_next_run_succeeds(
        tmp_path: Path, server: Server, tmpfs: Path) -> None:
    big, small = payload(3_000_000, b"full"), payload(10_000, b"small")
    server.files.update({"/big.bin": big, "/small.bin": small})
    lock = tmp_path / "rsrc.lock.toml"
    lock.write_text(HEAD + artifact("small", server.url + "/small.bin", small)
                    + artifact("big", server.url + "/big.bin", big))
    cache = tmpfs / "cache"
    r = invoke("download", "--lock", str(lock), cache=cache)
    line = one_line(r)
    assert r.returncode == DownloadError.exit_code and "No space left on device" in line, line
    assert str(cache / "partial") in line and "removed the partial download" in line
    assert not list((cache / "partial").iterdir()) and entries_lost_or_bad(cache) == []
    ROWS.append(("full disk (2 MiB tmpfs cache, 3 MB input)", f"one-line error naming the .part, exit {r.returncode}; "
                 "the .part removed", f"{CMD} -k full_disk"))
    # verify on a full disk: the stamp it writes has a name, and the message says it
    with (tmpfs / "filler").open("wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass
    only_small = tmp_path / "small.toml"
    only_small.write_text(HEAD + artifact("small", server.url + "/small.bin", small))
    v = invoke("verify", "--lock", str(only_small), cache=cache)
    vline = one_line(v)
    assert v.returncode == OutputError.exit_code and str(cache / "verified") in vline, vline
    ROWS.append(("verify on a full disk", f"one-line error naming the stamp, exit {v.returncode}",
                 f"{CMD} -k full_disk"))
    (tmpfs / "filler").unlink()
    _remount(tmpfs, "size=16m")  # space freed: the next run succeeds, nothing to clean by hand
    again = invoke("download", "--lock", str(lock), cache=cache)
    assert again.returncode == 0, again.stderr
    assert invoke("verify", "--lock", str(lock), cache=cache).returncode == 0
    assert entries_lost_or_bad(cache) == []
    ROWS.append(("after freeing space", "download and verify succeed", f"{CMD} -k full_disk"))


def test_a_read_only_cache_is_one_line_naming_the_path(tmp_path: Path, server: Server, tmpfs: Path) -> None:
    a, b = payload(10_000, b"ro-a"), payload(10_000, b"ro-b")
    server.files.update({"/a.bin": a, "/b.bin": b})
    lock_a, lock_ab = tmp_path / "a.toml", tmp_path / "ab.toml"
    lock_a.write_text(HEAD + artifact("a", server.url + "/a.bin", a))
    lock_ab.write_text(HEAD + artifact("a", server.url + "/a.bin", a) + artifact("b", server.url + "/b.bin", b))
    cache = tmpfs / "cache"
    assert invoke("download", "--lock", str(lock_a), cache=cache).returncode == 0
    _remount(tmpfs, "ro")
    try:
        r = invoke("download", "--lock", str(lock_ab), cache=cache)
        line = one_line(r)
        assert r.returncode == DownloadError.exit_code and "Read-only file system" in line and str(cache) in line, line
        v = invoke("verify", "--lock", str(lock_a), cache=cache)
        vline = one_line(v)
        assert v.returncode == OutputError.exit_code and str(cache / "verified") in vline, vline
    finally:
        _remount(tmpfs, "rw")
    assert entries_lost_or_bad(cache) == []
    assert invoke("download", "--lock", str(lock_ab), cache=cache).returncode == 0
    ROWS.append(("read-only cache root (tmpfs remounted ro)",
                 f"download: one-line error naming the path, exit {r.returncode}; verify: exit {v.returncode}; "
                 "after remounting rw the next run succeeds", f"{CMD} -k read_only"))
