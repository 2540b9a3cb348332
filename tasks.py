"""compatbuild: build Rust cdylibs that load on glibc 2.18, and prove that they do.

invoke imports this file as the module ``tasks``, ahead of the ``tasks/`` package of the
same name. Pointing ``__path__`` at that folder makes this module act as the package, so
``tasks.inputs.download`` and friends are the same code whether invoke, pytest or mypy imports
them. Compose your own pipelines below: every task is a function you can call.
"""

from __future__ import annotations

from pathlib import Path

__path__ = [str(Path(__file__).resolve().parent / "tasks")]

from tasks.cli import ns  # noqa: E402

__all__ = ["ns"]
