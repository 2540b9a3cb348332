"""URL checks shared by the lockfile, the HTTP client and every message: hosts, credentials.

A URL may carry ``user:password@``; :func:`tasks.errors.redact` (re-exported here)
replaces that part with ``***`` in any text (a URL, an error message, a log line), so no
message or log line compatbuild prints shows a credential. :func:`problem` is the lockfile's
rule for a URL it will fetch.
"""

from __future__ import annotations

from urllib.parse import urlparse

from tasks.errors import redact as redact  # the one redaction, for callers of this module

SCHEMES = ("http", "https", "file")


def problem(url: str) -> str | None:
    """Why ``url`` cannot be fetched (None when it can): a scheme we speak, and for http(s) a host."""
    try:
        parts = urlparse(url)
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number
    except ValueError as exc:
        return f"is not a valid URL ({exc})"
    if parts.scheme not in SCHEMES:
        return "must be an http, https or file URL"
    if parts.scheme in ("http", "https") and not parts.hostname:
        return "must be an http, https or file URL with a host"
    if any(c in url for c in "\r\n\t "):
        return "must not hold whitespace"
    return None
