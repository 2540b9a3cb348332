"""Test helper: a Docker client that knows only the image tags it is given, and records lookups."""

from __future__ import annotations

from typing import Any

from tasks.builder.docker_client import Docker


class FakeDocker(Docker):
    """Knows the images named in ``present``; records every lookup."""

    def __init__(self, present: set[str]) -> None:
        self.present = present
        self.lookups: list[str] = []

    def image(self, ref: str) -> Any:
        self.lookups.append(ref)
        return object() if ref in self.present else None
