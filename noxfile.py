"""nox sessions: tests, lint, typecheck, docs, bench. Dependencies come from pyproject.toml."""

from __future__ import annotations

from pathlib import Path

import nox

nox.needs_version = ">=2025.2.9"
nox.options.sessions = ["lint", "typecheck", "docs", "tests"]
nox.options.default_venv_backend = "venv"

PYPROJECT = nox.project.load_toml("pyproject.toml")
DEPS = PYPROJECT["project"]["dependencies"]


@nox.session
def tests(session: nox.Session) -> None:
    """Run the test suite: loopback HTTP, session GPG keys, the real Docker daemon."""
    session.install(*DEPS, *nox.project.dependency_groups(PYPROJECT, "test"))
    session.run("python", "-m", "pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff over the code, tests and tasks.py."""
    session.install(*nox.project.dependency_groups(PYPROJECT, "lint"))
    session.run("ruff", "check", ".", *session.posargs)


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict over the library and the task layer."""
    session.install(*DEPS, *nox.project.dependency_groups(PYPROJECT, "typecheck"))
    session.run("mypy", *session.posargs)


@nox.session
def docs(session: nox.Session) -> None:
    """The documentation site (mkdocs.yml, docs/): built with warnings as errors, outside the checkout."""
    session.install(*nox.project.dependency_groups(PYPROJECT, "docs"))
    site = Path(session.create_tmp()) / "site"
    session.run("mkdocs", "build", "--strict", "--site-dir", str(site), *session.posargs,
                env={"NO_MKDOCS_2_WARNING": "1"})  # mkdocs-material's banner about MkDocs 2


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks: ratios measured in one run; prints the tables of docs/benchmarks.md."""
    session.install(*DEPS, *nox.project.dependency_groups(PYPROJECT, "bench", "test"))
    session.run("python", "-m", "bench", *session.posargs)
