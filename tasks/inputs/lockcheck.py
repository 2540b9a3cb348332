"""Field checks for the lockfile parser: typed accessors that name file, entry and field.

Every pattern is used with ``fullmatch`` (``$`` would also match before a trailing newline).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

from tasks.errors import LockfileError
from tasks.inputs.urls import problem, redact

_HEX64 = re.compile(r"[0-9a-f]{64}")
_FPR = re.compile(r"[0-9A-F]{40}")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")
_GLIBC = re.compile(r"\d+\.\d+")
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


class Validator:
    """Small typed accessors that raise LockfileError naming file, entry and field."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.seen: dict[str, set[str]] = {}

    def table(self, data: dict[str, Any], key: str, where: str) -> dict[str, Any]:
        t = data.get(key)
        if not isinstance(t, dict):
            raise LockfileError(f"{self.file}: [{where}] table is missing")
        return t

    def each(self, data: dict[str, Any], kind: str, make: Any,
             scope: Callable[[dict[str, Any]], str] | None = None) -> Iterator[Any]:
        """Each ``[[kind]]`` table made into an object; names are unique within ``scope``."""
        items = data.get(kind, [])
        if not isinstance(items, list):
            raise LockfileError(f"{self.file}: '{kind}' must be an array of tables ([[{kind}]])")
        for i, t in enumerate(items):
            if not isinstance(t, dict):
                raise LockfileError(f"{self.file}: {kind} #{i + 1} must be a table")
            label = str(t["name"]) if isinstance(t.get("name"), str) else f"#{i + 1}"
            label = label if label.isprintable() else label.encode("unicode_escape").decode()
            where = f"{kind} '{label}'"
            obj = make(self, t, where)
            names = self.seen.setdefault(f"{kind}/{scope(t) if scope else ''}", set())
            if obj.name in names:
                raise LockfileError(f"{self.file}: {where}: duplicate name")
            names.add(obj.name)
            yield obj

    def unknown(self, t: dict[str, Any], where: str, allowed: set[str]) -> None:
        extra = sorted(set(t) - allowed)
        if extra:
            raise LockfileError(f"{self.file}: {where}: unknown field '{extra[0]}'")

    def string(
        self,
        t: dict[str, Any],
        where: str,
        key: str,
        *,
        pattern: re.Pattern[str] | None = None,
        what: str = "",
        optional: bool = False,
    ) -> str | None:
        value = t.get(key)
        if value is None or value == "":
            if optional:
                return None
            raise LockfileError(f"{self.file}: {where}: {key} is missing")
        if not isinstance(value, str):
            raise LockfileError(f"{self.file}: {where}: {key} must be a string")
        if pattern is not None and not pattern.fullmatch(value):
            raise LockfileError(
                f"{self.file}: {where}: {key} must be {what or 'a safe name'}, not {redact(repr(value))}"
            )
        return value

    def required(
        self, t: dict[str, Any], where: str, key: str, *, pattern: re.Pattern[str] | None = None,
        what: str = "",
    ) -> str:
        value = self.string(t, where, key, pattern=pattern, what=what)
        assert value is not None
        return value

    def name(self, t: dict[str, Any], where: str) -> str:
        value = self.string(t, where, "name", pattern=_NAME,
                            what="letters, digits and ._+- (no '/' or '..')")
        assert value is not None
        return value

    def sha256(self, t: dict[str, Any], where: str, *, optional: bool) -> str | None:
        """64 hex digits, either case; kept lower-case (the store's names, hashlib's digests)."""
        value = self.string(t, where, "sha256", optional=optional)
        if value is not None and not _HEX64.fullmatch(value := value.lower()):
            raise LockfileError(f"{self.file}: {where}: sha256 must be 64 hex digits")
        return value

    def digest(self, t: dict[str, Any], where: str, key: str) -> str | None:
        """An optional ``sha256:<64 hex>`` image digest or id, either case; kept lower-case."""
        value = t.get(key)
        if isinstance(value, str) and value[:7].lower() == "sha256:":
            t = {**t, key: value.lower()}
        return self.string(t, where, key, pattern=_DIGEST, what="sha256:<64 hex>", optional=True)

    def url(self, t: dict[str, Any], where: str, key: str, *, optional: bool = False) -> Any:
        value = self.string(t, where, key, optional=optional)
        if value is None:
            return None
        why = problem(value)
        if why is not None:
            raise LockfileError(f"{self.file}: {where}: {key} {why}, not {redact(repr(value))}")
        return value

    def size(self, t: dict[str, Any], where: str) -> int | None:
        value = t.get("size")
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise LockfileError(f"{self.file}: {where}: size must be a whole number of bytes, not {value!r}")
        return value
