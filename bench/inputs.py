"""Trusted inputs: download throughput of a 4 GiB file from loopback, ``invoke download`` vs
``curl``; the cached no-op of ``invoke download`` + ``invoke verify`` vs ``invoke --list``."""

from __future__ import annotations

import hashlib
import http.server
import os
import shutil
import threading
from pathlib import Path

from bench import harness as h

TITLE = "Trusted inputs"
SUMMARY = "`invoke download` of 4 GiB from loopback vs curl; cached download/verify vs `invoke --list`"


class _SendfileHandler(http.server.BaseHTTPRequestHandler):
    """GET of one file with sendfile(2), so the server is never the bottleneck."""

    path_on_disk: Path

    def do_GET(self) -> None:  # noqa: N802
        size = self.path_on_disk.stat().st_size
        self.send_response(200)
        self.send_header("Content-Length", str(size))
        self.end_headers()
        with self.path_on_disk.open("rb") as f:
            self.request.sendfile(f)

    def log_message(self, *args: object) -> None:
        pass


def run(work: Path) -> list[h.Row]:
    big = work / "big.bin"
    digest = hashlib.sha256()
    with big.open("wb") as f:
        for _ in range(4096):  # 4 GiB, so invoke's start-up (~0.35 s) weighs little
            block = os.urandom(1 << 20)
            digest.update(block)
            f.write(block)
    handler = type("H", (_SendfileHandler,), {"path_on_disk": big})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/big.bin"
    lock = work / "lock.toml"
    lock.write_text(
        f'schema = 1\n[target]\nname = "bench"\nglibc = "2.18"\n[base]\nimage = "x/y:1"\nid = "sha256:{"0" * 64}"\n'
        f'[[artifact]]\nname = "big"\nurl = "{url}"\nsha256 = "{digest.hexdigest()}"\n'
    )
    size_mb = big.stat().st_size / 1e6
    counter = iter(range(1000))

    def ours() -> float:
        cache = work / f"cache{next(counter)}"
        t = h.run(h.invoke("download", "--lock", str(lock)), {"INVOKE_COMPATBUILD_CACHE": str(cache)})
        shutil.rmtree(cache)
        return t

    def curl() -> float:
        t = h.run(["curl", "-sS", "-o", str(work / "curl.out"), url])
        (work / "curl.out").unlink()
        return t

    speed = h.interleave(3, ours=ours, curl=curl)
    cached = {"INVOKE_COMPATBUILD_CACHE": str(work / "warm")}
    h.run(h.invoke("download", "--lock", str(lock)), cached)
    h.run(h.invoke("verify", "--lock", str(lock)), cached)
    noop = h.interleave(
        10,
        download=lambda: h.run(h.invoke("download", "--lock", str(lock)), cached),
        verify=lambda: h.run(h.invoke("verify", "--lock", str(lock)), cached),
        both=lambda: h.run(h.invoke("download", "--lock", str(lock), "verify", "--lock", str(lock)), cached),
        listing=lambda: h.run(h.invoke("--list")),
    )
    server.shutdown()
    ours_mbs, curl_mbs = size_mb / speed["ours"], size_mb / speed["curl"]
    base = f"{noop['listing']:.2f} s"
    return [
        ("`invoke download`, 4 GiB from loopback (fresh cache)", f"{ours_mbs:.0f} MB/s", f"curl {curl_mbs:.0f} MB/s",
         f"{ours_mbs / curl_mbs:.2f}x curl"),
        ("`invoke download`, all cached", f"{noop['download']:.2f} s", base,
         f"{noop['download'] / noop['listing']:.2f}x `--list`"),
        ("`invoke verify`, all verified", f"{noop['verify']:.2f} s", base,
         f"{noop['verify'] / noop['listing']:.2f}x `--list`"),
        ("`invoke download verify` (one process)", f"{noop['both']:.2f} s", base,
         f"{noop['both'] / noop['listing']:.2f}x `--list`"),
    ]
