"""tasks.inputs.http, the one HTTP client of download and rpms, against loopback HTTP."""

from __future__ import annotations

import gzip

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from tasks.errors import DownloadError
from tasks.inputs import http
from tasks.inputs import rpmpins as rpms


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    slept: list[float] = []
    monkeypatch.setattr(http.time, "sleep", slept.append)
    return slept


def test_backoff_is_exponential_and_one_for_both_users(
        httpserver: HTTPServer, sleeps: list[float]) -> None:
    assert http.RETRY_DELAYS == (0.5, 1.0, 2.0)
    httpserver.expect_request("/down").respond_with_data("busy", status=502)
    said: list[str] = []
    with pytest.raises(DownloadError, match=r"HTTP 502 BAD GATEWAY for .*/down \(gave up after 4 tries\)"):
        http.get_bytes(httpserver.url_for("/down"), say=said.append)
    assert sleeps == [0.5, 1.0, 2.0] and len(httpserver.log) == 4
    assert said[0].endswith("HTTP 502 BAD GATEWAY for " + httpserver.url_for("/down") + "; retrying in 0.5 s")
    assert rpms.refresh.__kwdefaults__["fetch_bytes"] is http.get_bytes


def test_a_4xx_is_never_retried(httpserver: HTTPServer, sleeps: list[float]) -> None:
    httpserver.expect_request("/gone").respond_with_data("", status=410)
    with pytest.raises(DownloadError, match=r"^HTTP 410 GONE for http://.*/gone$"):
        http.get_bytes(httpserver.url_for("/gone"))
    assert len(httpserver.log) == 1 and sleeps == []


def test_a_refused_connection_is_retried(sleeps: list[float]) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/x"
    with pytest.raises(DownloadError, match=r"Connection refused for .* \(gave up after 4 tries\)"):
        http.get_bytes(dead)
    assert sleeps == [0.5, 1.0, 2.0]


def test_get_bytes_resumes_a_truncated_body_with_a_range_request(
        httpserver: HTTPServer, sleeps: list[float]) -> None:
    data = bytes(range(256)) * 400
    calls: list[str | None] = []

    def handler(request: Request) -> Response:
        rng = request.headers.get("Range")
        calls.append(rng)
        if rng is None:  # announce it all, send a third
            return Response(iter([data[: len(data) // 3]]), headers={"Content-Length": str(len(data))})
        start = int(rng.removeprefix("bytes=").rstrip("-"))
        return Response(data[start:], status=206, headers={
            "Content-Range": f"bytes {start}-{len(data) - 1}/{len(data)}"})

    httpserver.expect_request("/primary.xml.gz").respond_with_handler(handler)
    assert http.get_bytes(httpserver.url_for("/primary.xml.gz")) == data
    assert calls == [None, f"bytes={len(data) // 3}-"] and sleeps == [0.5]


def test_get_bytes_keeps_the_bytes_as_served(httpserver: HTTPServer) -> None:
    raw = gzip.compress(b"<metadata/>" * 100)
    httpserver.expect_request("/repomd.xml").respond_with_data(raw, headers={"Content-Encoding": "gzip"})
    got = http.get_bytes(httpserver.url_for("/repomd.xml"))
    assert got == raw  # a checksum in repomd.xml is of these bytes, not of what they decode to
    assert httpserver.log[0][0].headers.get("Accept-Encoding") == "identity"
