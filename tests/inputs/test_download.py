"""tasks.inputs.download against real loopback HTTP: pytest-httpserver, plus a raw socket server
for connection resets, and real processes for the lock and kill -9 behaviour."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import os
import signal
import socket
import stat
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from tasks.errors import DownloadError, HashMismatch, LockfileError, LockTimeout, SizeError
from tasks.inputs import download, http
from tasks.inputs import lockfile as lockfile_mod
from tasks.inputs.download import Fetched, fetch, fetch_all, summary
from tasks.inputs.lockfile import Lockfile, Resource, load
from tasks.settings import Settings
from tasks.store import QUARANTINE_KEEP, Store

ROOT = Path(__file__).resolve().parents[2]
HEAD = """schema = 1
[target]
name = "t"
glibc = "2.18"
[base]
image = "fedora:20"
id = "sha256:%s"
""" % ("0" * 64)
FPR = "A" * 40


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def payload(n: int, seed: bytes = b"x") -> bytes:
    block = hashlib.sha256(seed).digest() * 2048  # 64 KiB, not compressible to nothing
    return (block * (n // len(block) + 1))[:n]


@pytest.fixture(autouse=True)
def dl_fast(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(http, "RETRY_DELAYS", (0.01, 0.01, 0.01))
    monkeypatch.setattr(http, "TIMEOUT", (2.0, 2.0))


def lockfile(tmp_path: Path, body: str) -> Lockfile:
    path = tmp_path / "rsrc.lock.toml"
    path.write_text(HEAD + body)
    return load(path)


def artifact(name: str, url: str, data: bytes, **extra: str) -> str:
    lines = [f'name = "{name}"', f'url = "{url}"', f'sha256 = "{sha(data)}"']
    lines += [f"{k} = {v}" if k == "alt_urls" else f'{k} = "{v}"' for k, v in extra.items()]
    return "[[artifact]]\n" + "\n".join(lines) + "\n"


def settings(tmp_path: Path, **kw: object) -> Settings:
    kw.setdefault("progress", "never")
    return Settings(lock=tmp_path / "rsrc.lock.toml", cache=tmp_path / "cache",
                    out=tmp_path / "out", **kw)  # type: ignore[arg-type]


def resource(url: str, data: bytes | None, alt: tuple[str, ...] = ()) -> Resource:
    return Resource("artifact x", url, "x.bin", sha(data) if data is not None else None, alt)


def ranged(data: bytes, *, cut: int | None = None, cut_times: int = 1,
           delay: float = 0.0) -> Callable[[Request], Response]:
    """A handler honouring Range; the first ``cut_times`` answers stop after ``cut`` bytes
    while announcing the full length; ``delay`` sleeps per 64 KiB of a 200 answer."""
    calls = [0]

    def handler(request: Request) -> Response:
        calls[0] += 1
        rng = request.headers.get("Range")
        start = int(rng.removeprefix("bytes=").rstrip("-")) if rng else 0
        if rng and start >= len(data):
            return Response(status=416, headers={"Content-Range": f"bytes */{len(data)}"})
        body = data[start:]
        headers = {"Content-Length": str(len(body))}
        if rng:
            headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        if cut is not None and calls[0] <= cut_times:
            body = body[:cut]

        def chunks() -> Iterator[bytes]:
            for i in range(0, len(body), 1 << 16):
                if delay and not rng:
                    time.sleep(delay)
                yield body[i:i + (1 << 16)]
        return Response(chunks(), status=206 if rng else 200, headers=headers)
    return handler


# ------------------------------------------------------------------ the ordinary paths

def test_downloads_then_second_run_is_silent_and_makes_no_request(
        tmp_path: Path, httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = payload(3000, b"a"), payload(200_000, b"b")
    httpserver.expect_request("/a.tar.gz").respond_with_data(a)
    httpserver.expect_request("/b.tar.xz").respond_with_data(b)
    lock = lockfile(tmp_path, artifact("a", httpserver.url_for("/a.tar.gz"), a)
                    + artifact("b", httpserver.url_for("/b.tar.xz"), b))
    logs: list[str] = []
    got = fetch_all(lock, settings(tmp_path), log=logs.append)
    store = Store(tmp_path / "cache")
    assert [f.action for f in got] == ["downloaded", "downloaded"]
    assert store.path(sha(a)).read_bytes() == a and store.path(sha(b)).read_bytes() == b
    assert sorted(logs) == [f"Downloading artifact a ({httpserver.url_for('/a.tar.gz')})",
                            f"Downloading artifact b ({httpserver.url_for('/b.tar.xz')})"]
    assert summary(got) == "2 files: 2 downloaded (203.0 kB), 0 cached"
    assert not list((tmp_path / "cache" / "partial").iterdir())

    requests_before = len(httpserver.log)
    logs.clear()

    def no_session(*_a: object) -> None:
        raise AssertionError("a run with everything in the store opened an HTTP session")

    monkeypatch.setattr(http, "new_session", no_session)  # nor imports requests: ~0.1 s of a cached run
    again = fetch_all(lock, settings(tmp_path), log=logs.append)
    assert len(httpserver.log) == requests_before == 2
    assert logs == []  # the library says nothing when there is nothing to do
    assert [f.action for f in again] == ["cached", "cached"]
    assert summary(again) == "2 files: 0 downloaded, 2 cached"
    assert [f.path for f in again] == [f.path for f in got]


def test_wrong_hash_is_quarantined_never_stored(tmp_path: Path, httpserver: HTTPServer) -> None:
    httpserver.expect_request("/x").respond_with_data(b"evil bytes")
    r = resource(httpserver.url_for("/x"), b"good bytes")
    with pytest.raises(HashMismatch) as info:
        fetch(r, Store(tmp_path / "cache"))
    msg = str(info.value)
    assert f"expected {sha(b'good bytes')}, got {sha(b'evil bytes')}" in msg
    assert "artifact x: sha256 mismatch for" in msg and "quarantine" in msg
    assert not [p for p in (tmp_path / "cache" / "sha256").rglob("*") if p.is_file()]
    moved = list((tmp_path / "cache" / "quarantine").iterdir())
    assert [p.read_bytes() for p in moved] == [b"evil bytes"] and str(moved[0]) in msg
    assert not list((tmp_path / "cache" / "partial").iterdir())


def test_404_fails_at_once_without_retry(tmp_path: Path, httpserver: HTTPServer) -> None:
    httpserver.expect_request("/x").respond_with_data("no", status=404)
    with pytest.raises(DownloadError, match=r"HTTP 404 NOT FOUND for http://.*/x"):
        fetch(resource(httpserver.url_for("/x"), b"data"), Store(tmp_path / "cache"))
    assert len(httpserver.log) == 1


def test_500_then_200_succeeds_after_retry(tmp_path: Path, httpserver: HTTPServer) -> None:
    httpserver.expect_oneshot_request("/x").respond_with_data("busy", status=503)
    httpserver.expect_request("/x").respond_with_data(b"data")
    logs: list[str] = []
    got = fetch(resource(httpserver.url_for("/x"), b"data"), Store(tmp_path / "cache"),
                log=logs.append)
    assert got.action == "downloaded" and got.path.read_bytes() == b"data"
    assert len(httpserver.log) == 2
    assert any("HTTP 503" in line and "retrying" in line for line in logs)


def test_persistent_500_gives_up_after_all_attempts(tmp_path: Path, httpserver: HTTPServer) -> None:
    httpserver.expect_request("/x").respond_with_data("down", status=500)
    with pytest.raises(DownloadError, match=r"HTTP 500 .*\(gave up after 4 tries\)"):
        fetch(resource(httpserver.url_for("/x"), b"data"), Store(tmp_path / "cache"))
    assert len(httpserver.log) == len(http.RETRY_DELAYS) + 1 == 4


def test_read_timeout_is_retried(tmp_path: Path, httpserver: HTTPServer,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(http, "TIMEOUT", (2.0, 0.2))
    monkeypatch.setattr(http, "RETRY_DELAYS", (0.4, 0.4))  # one-thread server: let it finish
    calls = [0]

    def slow_once(request: Request) -> Response:
        calls[0] += 1
        if calls[0] == 1:
            time.sleep(0.5)
        return Response(b"data")
    httpserver.expect_request("/x").respond_with_handler(slow_once)
    got = fetch(resource(httpserver.url_for("/x"), b"data"), Store(tmp_path / "cache"))
    assert got.path.read_bytes() == b"data" and calls[0] >= 2


# ------------------------------------------------------------------ resume

def test_truncated_body_is_resumed_with_a_range_request(
        tmp_path: Path, httpserver: HTTPServer) -> None:
    data = payload(300_000)
    httpserver.expect_request("/x").respond_with_handler(ranged(data, cut=100_000))
    got = fetch(resource(httpserver.url_for("/x"), data), Store(tmp_path / "cache"))
    assert got.path.read_bytes() == data
    ranges = [req.headers.get("Range") for req, _resp in httpserver.log]
    assert ranges == [None, "bytes=100000-"]


def test_always_truncated_body_fails_as_truncated(tmp_path: Path, httpserver: HTTPServer) -> None:
    data = payload(10_000)
    httpserver.expect_request("/x").respond_with_handler(ranged(data, cut=0, cut_times=99))
    store = Store(tmp_path / "cache")
    with pytest.raises(DownloadError, match=r"truncated: got 0 of 10000 bytes from http://"):
        fetch(resource(httpserver.url_for("/x"), data), store)
    assert len(httpserver.log) == 4


def test_truncated_bytes_are_kept_for_the_next_run(
        tmp_path: Path, httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(http, "RETRY_DELAYS", ())  # one attempt per fetch
    data = payload(10_000)
    httpserver.expect_request("/x").respond_with_handler(ranged(data, cut=2500))
    store, r = Store(tmp_path / "cache"), resource(httpserver.url_for("/x"), data)
    with pytest.raises(DownloadError, match="truncated: got 2500 of 10000 bytes"):
        fetch(r, store)
    assert store.partial(r.url).read_bytes() == data[:2500]
    assert fetch(r, store).path.read_bytes() == data
    assert httpserver.log[-1][0].headers.get("Range") == "bytes=2500-"


class RawServer:
    """A socket server playing one scripted function per connection."""

    def __init__(self, script: list[Callable[[socket.socket, str], None]]) -> None:
        self.script, self.requests = script, list[str]()
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/x"
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        for play in self.script:
            conn, _ = self.sock.accept()
            with conn:
                head = b""
                while b"\r\n\r\n" not in head:
                    head += conn.recv(4096)
                self.requests.append(head.decode())
                play(conn, head.decode())


def test_connection_reset_mid_body_is_resumed(tmp_path: Path) -> None:
    data, sizes = payload(200_000), []  # type: bytes, list[int]

    def reset_half(conn: socket.socket, _req: str) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(data))
        conn.sendall(data[:80_000])
        time.sleep(0.05)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close: RST

    def rest(conn: socket.socket, req: str) -> None:
        start = int(req.split("Range: bytes=")[1].split("-")[0])
        conn.sendall(b"HTTP/1.1 206 Partial Content\r\nContent-Length: %d\r\n"
                     b"Content-Range: bytes %d-%d/%d\r\nConnection: close\r\n\r\n"
                     % (len(data) - start, start, len(data) - 1, len(data)))
        conn.sendall(data[start:])

    server = RawServer([reset_half, rest])
    store, r = Store(tmp_path / "cache"), resource(server.url, data)
    got = fetch(r, store, progress=lambda done, _total: sizes.append(done))
    assert got.path.read_bytes() == data
    # the reset may eat bytes still in flight: the resume starts where the .part ended
    held = max(n for n in sizes if n <= 80_000)
    assert len(server.requests) == 2 and f"Range: bytes={held}-" in server.requests[1]
    assert 0 < held <= 80_000


def test_part_already_complete_is_adopted_after_416(tmp_path: Path, httpserver: HTTPServer) -> None:
    data = payload(5000)
    httpserver.expect_request("/x").respond_with_handler(ranged(data))
    store, r = Store(tmp_path / "cache"), resource(httpserver.url_for("/x"), data)
    store.ensure()
    store.partial(r.url).write_bytes(data)  # a run killed between its last byte and adopt
    assert fetch(r, store).path.read_bytes() == data
    assert [req.headers.get("Range") for req, _ in httpserver.log] == ["bytes=5000-"]


def test_server_ignoring_range_restarts_from_zero(tmp_path: Path, httpserver: HTTPServer) -> None:
    data = payload(5000)
    httpserver.expect_request("/x").respond_with_data(data)  # 200 whatever the Range
    store, r = Store(tmp_path / "cache"), resource(httpserver.url_for("/x"), data)
    store.ensure()
    store.partial(r.url).write_bytes(b"stale junk")
    assert fetch(r, store).path.read_bytes() == data
    assert httpserver.log[0][0].headers.get("Range") == "bytes=10-"


# ------------------------------------------------------------------ bytes, URLs, mirrors

def test_content_encoding_gzip_stores_the_raw_bytes(tmp_path: Path, httpserver: HTTPServer) -> None:
    raw = gzip.compress(payload(50_000))
    httpserver.expect_request("/x.tar.gz").respond_with_data(
        raw, headers={"Content-Encoding": "gzip"}, content_type="application/x-gzip")
    got = fetch(resource(httpserver.url_for("/x.tar.gz"), raw), Store(tmp_path / "cache"))
    assert got.path.read_bytes() == raw and got.sha256 == sha(raw)


def test_file_url_is_copied_and_verified(tmp_path: Path) -> None:
    src = tmp_path / "src dir" / "x.tar.gz"
    src.parent.mkdir()
    src.write_bytes(b"local bytes")
    got = fetch(resource(src.as_uri(), b"local bytes"), Store(tmp_path / "cache"))
    assert got.action == "downloaded" and got.path.read_bytes() == b"local bytes"


def test_missing_file_url_is_a_download_error(tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="cannot read .*nope.tar.gz: No such file"):
        fetch(resource((tmp_path / "nope.tar.gz").as_uri(), b"x"), Store(tmp_path / "cache"))


def test_mirror_rewrites_the_url(tmp_path: Path, httpserver: HTTPServer) -> None:
    httpserver.expect_request("/dl/x.tar.gz").respond_with_data(b"mirrored")
    lock = lockfile(tmp_path, artifact("x", "https://upstream.invalid/dl/x.tar.gz", b"mirrored"))
    logs: list[str] = []
    s = settings(tmp_path, mirrors={"https://upstream.invalid/": httpserver.url_for("/")})
    [got] = fetch_all(lock, s, log=logs.append)
    assert got.path.read_bytes() == b"mirrored" and len(httpserver.log) == 1
    assert logs[0] == f"Downloading artifact x ({httpserver.url_for('/dl/x.tar.gz')})"


def test_alt_url_is_used_when_the_primary_fails(tmp_path: Path, httpserver: HTTPServer) -> None:
    httpserver.expect_request("/gone").respond_with_data("", status=404)
    httpserver.expect_request("/alt").respond_with_data(b"data")
    r = resource(httpserver.url_for("/gone"), b"data", (httpserver.url_for("/alt"),))
    assert fetch(r, Store(tmp_path / "cache")).path.read_bytes() == b"data"
    assert [req.path for req, _ in httpserver.log] == ["/gone", "/alt"]


def test_refused_connection_is_retried_then_the_alt_url_used(
        tmp_path: Path, httpserver: HTTPServer) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/x"  # nothing listens here
    httpserver.expect_request("/alt").respond_with_data(b"data")
    logs: list[str] = []
    r = resource(dead, b"data", (httpserver.url_for("/alt"),))
    assert fetch(r, Store(tmp_path / "cache"), log=logs.append).path.read_bytes() == b"data"
    assert sum("Connection refused" in line and "retrying" in line for line in logs) == 3
    assert (f"artifact x: Connection refused for {dead} (gave up after 4 tries); "
            "trying the next URL") in logs


def test_cancel_stops_a_transfer_and_keeps_its_bytes(
        tmp_path: Path, httpserver: HTTPServer) -> None:
    data = payload(500_000)
    httpserver.expect_request("/x").respond_with_data(data)
    store, r = Store(tmp_path / "cache"), resource(httpserver.url_for("/x"), data)
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(DownloadError, match="artifact x: interrupted"):
        fetch(r, store, cancel=cancel)
    assert 0 < store.partial(r.url).stat().st_size < len(data) and len(httpserver.log) == 1


def test_all_urls_failing_names_each_urls_error(tmp_path: Path, httpserver: HTTPServer) -> None:
    httpserver.expect_request("/gone").respond_with_data("", status=404)
    httpserver.expect_request("/alt").respond_with_data("", status=403)
    r = resource(httpserver.url_for("/gone"), b"data", (httpserver.url_for("/alt"),))
    with pytest.raises(DownloadError) as info:
        fetch(r, Store(tmp_path / "cache"))
    assert str(info.value) == (f"artifact x: all 2 URLs failed: URL 1: HTTP 404 NOT FOUND for "
                               f"{httpserver.url_for('/gone')}; URL 2: HTTP 403 FORBIDDEN for "
                               f"{httpserver.url_for('/alt')}")


def test_unpinned_signature_is_recorded_and_then_cached(
        tmp_path: Path, httpserver: HTTPServer) -> None:
    httpserver.expect_request("/x.tar.xz").respond_with_data(b"tarball")
    httpserver.expect_request("/x.tar.xz.sig").respond_with_data(b"signature")
    httpserver.expect_request("/key.asc").respond_with_data(b"key")
    sig_url = httpserver.url_for("/x.tar.xz.sig")
    lock = lockfile(tmp_path, f'[[key]]\nname = "k"\nurl = "{httpserver.url_for("/key.asc")}"\n'
                    f'fingerprints = ["{FPR}"]\n'
                    + artifact("x", httpserver.url_for("/x.tar.xz"), b"tarball",
                               signature_url=sig_url, key="k"))
    got = fetch_all(lock, settings(tmp_path), log=lambda _m: None)
    assert [f.action for f in got] == ["downloaded"] * 3
    store = Store(tmp_path / "cache")
    assert store.url_hash(sig_url) == sha(b"signature")
    assert store.path(sha(b"signature")).read_bytes() == b"signature"
    before = len(httpserver.log)
    again = fetch_all(lock, settings(tmp_path), log=lambda _m: None)
    assert len(httpserver.log) == before == 3 and {f.action for f in again} == {"cached"}


# ------------------------------------------------------------------ fetch_all

def test_failures_let_the_others_finish_then_raise_the_first(
        tmp_path: Path, httpserver: HTTPServer) -> None:
    httpserver.expect_request("/ok").respond_with_data(b"ok")
    httpserver.expect_request("/a").respond_with_data("", status=404)
    httpserver.expect_request("/b").respond_with_data("", status=410)
    lock = lockfile(tmp_path, artifact("a", httpserver.url_for("/a"), b"a")
                    + artifact("ok", httpserver.url_for("/ok"), b"ok")
                    + artifact("b", httpserver.url_for("/b"), b"b"))
    logs: list[str] = []
    with pytest.raises(DownloadError) as info:
        fetch_all(lock, settings(tmp_path), log=logs.append)
    assert str(info.value).startswith("artifact a: HTTP 404")
    assert str(info.value).endswith("(and 1 more failed)") and "\n" not in str(info.value)
    assert Store(tmp_path / "cache").has(sha(b"ok"))
    assert logs[-1] == f"Also failed: artifact b: HTTP 410 GONE for {httpserver.url_for('/b')}"


def test_only_selects_one_name_and_rejects_unknown(tmp_path: Path, httpserver: HTTPServer) -> None:
    httpserver.expect_request("/p.rpm").respond_with_data(b"rpm")
    lock = lockfile(tmp_path, artifact("a", httpserver.url_for("/a"), b"a")
                    + f'[[rpm]]\nname = "make"\nurl = "{httpserver.url_for("/p.rpm")}"\n'
                      f'sha256 = "{sha(b"rpm")}"\n')
    [got] = fetch_all(lock, settings(tmp_path), only="make", log=lambda _m: None)
    assert got.resource.label == "rpm make" and [r.path for r, _ in httpserver.log] == ["/p.rpm"]
    with pytest.raises(LockfileError, match=r"no artifact, key or rpm 'nope' "
                                            r"\(have artifacts: a; rpms: make\)"):
        fetch_all(lock, settings(tmp_path), only="nope")


def test_progress_always_draws_and_still_fetches(
        tmp_path: Path, httpserver: HTTPServer, capsys: pytest.CaptureFixture[str]) -> None:
    data = payload(300_000)
    httpserver.expect_request("/x").respond_with_data(data)
    lock = lockfile(tmp_path, artifact("x", httpserver.url_for("/x"), data))
    [got] = fetch_all(lock, settings(tmp_path, progress="always"), log=lambda _m: None)
    assert got.path.read_bytes() == data
    err = capsys.readouterr().err  # not a terminal: "always" draws anyway
    assert "artifact x" in err and "\u2501" in err and "300.0/300.0 kB" in err, err


@pytest.mark.parametrize("progress", ["auto", "never"])
def test_progress_draws_nothing_into_a_pipe_unless_always(
        tmp_path: Path, httpserver: HTTPServer, capsys: pytest.CaptureFixture[str],
        progress: str) -> None:
    data = payload(300_000)
    httpserver.expect_request("/x").respond_with_data(data)
    lock = lockfile(tmp_path, artifact("x", httpserver.url_for("/x"), data))
    fetch_all(lock, settings(tmp_path, progress=progress), log=lambda _m: None)
    assert capsys.readouterr().err == ""


# ------------------------------------------------------------------ disks

def test_disk_full_is_one_line_naming_the_path(tmp_path: Path, httpserver: HTTPServer) -> None:
    data = payload(200_000)
    httpserver.expect_request("/x").respond_with_data(data)
    store, r = Store(tmp_path / "cache"), resource(httpserver.url_for("/x"), data)
    store.ensure()
    store.partial(r.url).symlink_to("/dev/full")  # every write: ENOSPC
    with pytest.raises(DownloadError) as info:
        fetch(r, store)
    msg = str(info.value)
    assert "No space left on device" in msg and str(store.partial(r.url)) in msg
    assert "\n" not in msg and len(httpserver.log) == 1  # a full disk is not retried


def test_cache_under_a_file_is_a_download_error(tmp_path: Path, httpserver: HTTPServer) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(DownloadError, match="Not a directory") as info:
        fetch(resource(httpserver.url_for("/x"), b"x"), Store(tmp_path / "file" / "cache"))
    assert "\n" not in str(info.value) and not httpserver.log


# ------------------------------------------------------------------ processes

FETCH_SCRIPT = """
import sys, time
from pathlib import Path
from tasks.inputs.download import fetch
from tasks.inputs.lockfile import Resource
from tasks.store import Store
url, digest, cache, go = sys.argv[1:5]
while go != "-" and not Path(go).exists():
    time.sleep(0.005)
print(fetch(Resource("artifact x", url, "x.bin", digest), Store(Path(cache))).path)
"""


def run_fetch(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", FETCH_SCRIPT, *args], cwd=ROOT,  # noqa: S603
                            stdout=subprocess.PIPE, text=True)


def test_four_processes_make_one_request(tmp_path: Path, httpserver: HTTPServer) -> None:
    data = payload(2_000_000)
    httpserver.expect_request("/x").respond_with_handler(ranged(data, delay=0.005))
    go, cache = tmp_path / "go", tmp_path / "cache"
    procs = [run_fetch(httpserver.url_for("/x"), sha(data), str(cache), str(go)) for _ in range(4)]
    time.sleep(0.5)  # let all four start and import before the race begins
    go.touch()
    outs = {p.communicate(timeout=30)[0].strip() for p in procs}
    assert [p.returncode for p in procs] == [0] * 4
    assert outs == {str(Store(cache).path(sha(data)))}
    assert len(httpserver.log) == 1
    assert not list((cache / "partial").iterdir())


def test_kill_9_mid_download_then_the_next_run_resumes(
        tmp_path: Path, httpserver: HTTPServer) -> None:
    data = payload(20_000_000)
    httpserver.expect_request("/big").respond_with_handler(ranged(data, delay=0.01))
    store, url = Store(tmp_path / "cache"), httpserver.url_for("/big")
    proc = run_fetch(url, sha(data), str(store.root), "-")
    part = store.partial(url)
    deadline = time.monotonic() + 20
    while not (part.exists() and part.stat().st_size > 1_000_000):
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    held = part.stat().st_size
    assert 0 < held < len(data) and not store.has(sha(data))

    got: Fetched = fetch(resource(url, data), store)
    assert got.action == "downloaded" and got.sha256 == sha(data)
    assert hashlib.sha256(got.path.read_bytes()).hexdigest() == sha(data)
    assert httpserver.log[-1][0].headers.get("Range") == f"bytes={held}-"
    assert not part.exists()


# ------------------------------------------------------------------ issue 8: bounds, privacy, deadlines

def sized(url: str, data: bytes, size: int | None = None, alt: tuple[str, ...] = ()) -> Resource:
    return Resource("artifact x", url, "x.bin", sha(data), alt, len(data) if size is None else size)


def test_a_content_length_above_the_pinned_size_is_refused_before_writing(
        tmp_path: Path, httpserver: HTTPServer) -> None:
    httpserver.expect_request("/x").respond_with_data(payload(5000))
    store = Store(tmp_path / "cache")
    with pytest.raises(SizeError, match=r"announces 5000 bytes, more than the 100 bytes the lockfile pins"):
        fetch(sized(httpserver.url_for("/x"), b"x", 100), store)
    assert not store.partial(httpserver.url_for("/x")).exists() and len(httpserver.log) == 1


def _endless(conn: socket.socket, _req: str) -> None:
    """A raw server handler: 200 with no Content-Length and a body that never ends (64 MiB)."""
    conn.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")
    with contextlib.suppress(OSError):
        for _ in range(1000):
            conn.sendall(b"z" * 65536)


def test_a_body_longer_than_the_pinned_size_stops_there(tmp_path: Path) -> None:
    """No Content-Length, and a body that never ends: stopped at the pin, nothing kept."""
    server = RawServer([_endless])
    store = Store(tmp_path / "cache")
    with pytest.raises(SizeError, match="body is longer than the 200000 bytes the lockfile pins"):
        fetch(sized(server.url, b"x", 200_000), store)
    assert not store.partial(server.url).exists()
    assert not [p for p in (store.root / "sha256").rglob("*") if p.is_file()]


def test_an_unpinned_file_is_capped(tmp_path: Path, httpserver: HTTPServer,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    httpserver.expect_request("/x.sig").respond_with_data(payload(lockfile_mod.UNPINNED_MAX + 1))
    with pytest.raises(SizeError, match=rf"more than the {lockfile_mod.UNPINNED_MAX} bytes allowed for an unpinned"):
        fetch(resource(httpserver.url_for("/x.sig"), None), Store(tmp_path / "cache"))


def test_a_pinned_file_without_a_size_has_a_default_cap(tmp_path: Path) -> None:
    """A Content-Length of 3 GB for a pinned file without a size pin: refused before a byte
    is read, once (no retry), in one line that names the setting."""
    def huge(conn: socket.socket, _req: str) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 3000000000\r\nConnection: close\r\n\r\n")
        with contextlib.suppress(OSError):
            conn.sendall(b"z" * 65536)

    server = RawServer([huge] * 5)
    store = Store(tmp_path / "cache")
    assert lockfile_mod.DOWNLOAD_MAX == 1 << 30
    with pytest.raises(SizeError, match=r"announces 3000000000 bytes, more than the 1073741824-byte cap "
                       r"on a download without a pinned size \(config compatbuild\.max_download\); "
                       r"refused before writing it") as err:
        fetch(resource(server.url, b"x"), store)
    assert "\n" not in str(err.value) and len(server.requests) == 1
    assert not store.partial(server.url).exists()


def test_the_cap_on_a_pinned_file_without_a_size_is_configurable(tmp_path: Path) -> None:
    """An endless body (no Content-Length) stops at compatbuild.max_download, nothing kept."""
    server = RawServer([_endless])
    lock = lockfile(tmp_path, artifact("a", server.url, b"x"))
    store = Store(tmp_path / "cache")
    with pytest.raises(SizeError, match=r"body is longer than the 300000-byte cap on a download without a "
                       r"pinned size \(config compatbuild\.max_download\)"):
        fetch_all(lock, settings(tmp_path, max_download=300_000), log=lambda _: None)
    assert not store.partial(server.url).exists()
    assert not [p for p in (store.root / "sha256").rglob("*") if p.is_file()]


@pytest.mark.parametrize("kind", ["fifo", "/dev/zero"])
def test_a_file_url_that_is_not_a_regular_file_is_refused_at_once(tmp_path: Path, kind: str) -> None:
    src = Path("/dev/zero")
    if kind == "fifo":
        src = tmp_path / "pipe"
        os.mkfifo(src)
    started = time.monotonic()
    with pytest.raises(SizeError, match="is not a regular file"):
        fetch(resource(src.as_uri(), b"x"), Store(tmp_path / "cache"))
    assert time.monotonic() - started < 2


def test_a_file_url_that_names_a_directory_is_one_line(tmp_path: Path) -> None:
    folder = tmp_path / "a-dir"
    folder.mkdir()
    said = f"^artifact x: {folder} is a directory; a file:// URL must name a regular file$"
    with pytest.raises(SizeError, match=said):
        fetch(resource(folder.as_uri(), b"x"), Store(tmp_path / "cache"))


def test_quarantine_keeps_one_file_per_label_and_a_few_in_all(tmp_path: Path, httpserver: HTTPServer) -> None:
    httpserver.expect_request("/x").respond_with_data(b"evil bytes")
    store = Store(tmp_path / "cache")
    for _ in range(4):  # a mirror serving bad bytes on every run
        with pytest.raises(HashMismatch):
            fetch(resource(httpserver.url_for("/x"), b"good bytes"), store)
    assert len(list((store.root / "quarantine").iterdir())) == 1
    for i in range(QUARANTINE_KEEP + 3):
        with pytest.raises(HashMismatch):
            fetch(Resource(f"artifact {i}", httpserver.url_for("/x"), "x", sha(b"good")), store)
    assert len(list((store.root / "quarantine").iterdir())) == QUARANTINE_KEEP


def test_a_private_file_url_stays_private_in_cache_and_quarantine(tmp_path: Path) -> None:
    src = tmp_path / "secret.tgz"
    src.write_bytes(b"root only")
    src.chmod(0o640)
    store = Store(tmp_path / "cache")
    got = fetch(resource(src.as_uri(), b"root only"), store)
    assert stat.S_IMODE(got.path.stat().st_mode) == 0o640  # was 0644: world-readable
    other = tmp_path / "other.tgz"
    other.write_bytes(b"also private")
    other.chmod(0o600)
    with pytest.raises(HashMismatch):
        fetch(resource(other.as_uri(), b"what the lock pins"), store)
    [moved] = (store.root / "quarantine").iterdir()
    assert stat.S_IMODE(moved.stat().st_mode) & 0o077 == 0


def test_a_hash_mismatch_tries_the_alternate_url(tmp_path: Path, httpserver: HTTPServer) -> None:
    httpserver.expect_request("/bad").respond_with_data(b"evil bytes")
    httpserver.expect_request("/alt").respond_with_data(b"good bytes")
    store = Store(tmp_path / "cache")
    got = fetch(resource(httpserver.url_for("/bad"), b"good bytes", (httpserver.url_for("/alt"),)), store)
    assert got.path.read_bytes() == b"good bytes" and [r.path for r, _ in httpserver.log] == ["/bad", "/alt"]
    assert [p.read_bytes() for p in (store.root / "quarantine").iterdir()] == [b"evil bytes"]


def test_a_drip_feeding_server_ends_at_the_deadline(tmp_path: Path) -> None:
    """One byte every 0.3 s never trips the per-read timeout (2 s here): the deadline ends it."""
    def drip(conn: socket.socket, _req: str) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
        with contextlib.suppress(OSError):
            for _ in range(100):
                conn.sendall(b"d")
                time.sleep(0.3)

    server = RawServer([drip])
    started = time.monotonic()
    with pytest.raises(DownloadError, match=r"took longer than the 1.5 s deadline \(\d+ bytes held"):
        fetch(resource(server.url, b"x" * 1000), Store(tmp_path / "cache"), deadline=1.5)
    assert 1.4 < time.monotonic() - started < 2.5


def test_waiting_on_another_process_lock_is_said_once_and_bounded(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(download, "LOCK_GRACE", 0.5)
    store, r = Store(tmp_path / "cache"), resource("http://127.0.0.1:9/x", b"data")
    store.ensure()
    holder = subprocess.Popen([sys.executable, "-c", HOLD_SCRIPT, str(store.root), r.url],  # noqa: S603
                              cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        logs: list[str] = []
        started = time.monotonic()
        with pytest.raises(LockTimeout, match=r"another process has held the download lock .*\.lock for over "
                                              r"0.7 s; gave up waiting"):
            fetch(r, store, log=logs.append, deadline=0.2)
        assert 0.6 < time.monotonic() - started < 2
        assert logs == [f"Waiting for another process downloading artifact x ({r.url}); giving up after 0.7 s"]
    finally:
        holder.kill()
        holder.wait()


HOLD_SCRIPT = """
import sys, time
from pathlib import Path
from tasks.store import Store
lock = Store(Path(sys.argv[1])).file_lock(sys.argv[2])
lock.acquire()
print("held", flush=True)
time.sleep(60)
"""

STALL_SCRIPT = """
import sys
from pathlib import Path
from tasks.inputs.download import fetch_all
from tasks.inputs.lockfile import load
from tasks.settings import Settings
lock = load(Path(sys.argv[1]))
s = Settings(lock=Path(sys.argv[1]), cache=Path(sys.argv[2]), out=Path(sys.argv[2]), jobs=3, progress="never")
try:
    fetch_all(lock, s, log=lambda m: print(m, flush=True))
except KeyboardInterrupt:
    print("interrupted", flush=True)
    sys.exit(130)
"""


def test_ctrl_c_ends_parallel_stalled_downloads_within_a_second(tmp_path: Path) -> None:
    """Three downloads stalled mid-body (the read timeout is 60 s): SIGINT used to take 36 s."""
    def stall(conn: socket.socket, _req: str) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\nsome")
        time.sleep(30)

    server = ThreadedRawServer(stall)
    body = "".join(artifact(n, server.url + n, b"x") for n in "abc")
    lockfile(tmp_path, body)
    proc = subprocess.Popen([sys.executable, "-c", STALL_SCRIPT, str(tmp_path / "rsrc.lock.toml"),  # noqa: S603
                             str(tmp_path / "cache")], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 20
    while len(server.requests) < 3:
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.02)
    time.sleep(0.3)  # the three reads are blocked now
    started = time.monotonic()
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=10)
    assert time.monotonic() - started < 1.0, out
    assert proc.returncode == 130 and out.strip().splitlines()[-1] == "interrupted"


class ThreadedRawServer:
    """A socket server playing ``play`` on every connection, each in its own thread."""

    def __init__(self, play: Callable[[socket.socket, str], None]) -> None:
        self.play, self.requests = play, list[str]()
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            conn, _ = self.sock.accept()
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        with conn:
            head = b""
            while b"\r\n\r\n" not in head:
                head += conn.recv(4096)
            self.requests.append(head.decode())
            self.play(conn, head.decode())


def test_credentials_in_urls_are_in_no_message_or_log_line(tmp_path: Path, httpserver: HTTPServer) -> None:
    httpserver.expect_request("/x").respond_with_data("", status=404)
    url = httpserver.url_for("/x").replace("http://", "http://user:s3cret@")
    logs: list[str] = []
    with pytest.raises(DownloadError) as info:
        fetch(resource(url, b"x", (url + "?2",)), Store(tmp_path / "cache"), log=logs.append)
    assert logs and all("s3cret" not in line for line in logs) and "s3cret" not in str(info.value)
    assert "http://***@" in str(info.value)


def test_lines_from_parallel_downloads_are_whole_lines(tmp_path: Path, httpserver: HTTPServer) -> None:
    """print writes a line's text and its newline apart: threads ran lines together."""
    out: list[str] = []

    def print_like(message: str) -> None:  # what print does: the text, then the end
        out.append(message)
        time.sleep(0.01)
        out.append("\n")

    names = [f"f{i}" for i in range(8)]
    for n in names:
        httpserver.expect_request(f"/{n}").respond_with_data(n.encode())
    lock = lockfile(tmp_path, "".join(artifact(n, httpserver.url_for(f"/{n}"), n.encode()) for n in names))
    fetch_all(lock, settings(tmp_path, jobs=8), log=print_like)
    lines = "".join(out).splitlines()
    assert len(lines) == 8 and all(line.startswith("Downloading artifact f") for line in lines), lines


def test_after_a_full_disk_the_partial_download_is_removed(tmp_path: Path, httpserver: HTTPServer) -> None:
    data = payload(200_000)
    httpserver.expect_request("/x").respond_with_data(data)
    store, r = Store(tmp_path / "cache"), resource(httpserver.url_for("/x"), data)
    store.ensure()
    store.partial(r.url).symlink_to("/dev/full")  # every write: ENOSPC
    with pytest.raises(DownloadError, match="No space left on device; removed the partial download"):
        fetch(r, store)
    assert not store.partial(r.url).is_symlink() and not store.partial(r.url).exists()
    assert fetch(r, store).path.read_bytes() == data  # the next run is not blocked by it
