"""The README is short and its links hold; the rest of the documentation is the docs/ site.

``nox -s docs`` builds that site with ``mkdocs build --strict`` (a broken link between its
pages fails there); these tests guard the README, which mkdocs does not read.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

from tasks.settings import PROJECT_ROOT

README = PROJECT_ROOT / "README.md"
MAX_LINES = 250

# [text](target) and [text](target "title"), not images' own files only: both are links here
_INLINE = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_REFERENCE = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$", re.M)
_FENCE = re.compile(r"^```.*?^```", re.M | re.S)


def _relative_links(text: str) -> list[str]:
    prose = _FENCE.sub("", text)
    prose = re.sub(r"`[^`\n]*`", "", prose)  # code spans are not links
    links = _INLINE.findall(prose) + _REFERENCE.findall(prose)
    return [ln for ln in links if not re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", ln) and not ln.startswith("#")]


def test_the_readme_is_at_most_250_lines() -> None:
    lines = README.read_text().splitlines()
    assert len(lines) <= MAX_LINES, f"README.md has {len(lines)} lines; move detail into docs/"


def test_every_relative_link_in_the_readme_points_at_a_file_that_exists() -> None:
    links = _relative_links(README.read_text())
    assert links, "the README links into docs/"
    missing = [ln for ln in links if not (README.parent / unquote(ln.split("#", 1)[0])).exists()]
    assert not missing, missing


def test_the_link_check_sees_links_and_skips_urls_anchors_and_code() -> None:
    text = ('[a](docs/a.md) [b](docs/b.md#part "t") [c](https://x.org/c.md) [d](#here)\n'
            "`[e](e.md)`\n```\n[f](f.md)\n```\n[g]: docs/g.md\n")
    assert _relative_links(text) == ["docs/a.md", "docs/b.md#part", "docs/g.md"]


def test_the_docs_site_has_every_page_its_nav_names() -> None:
    nav = re.findall(r"^\s*-\s[^:]+:\s*(\S+\.md)\s*$", (PROJECT_ROOT / "mkdocs.yml").read_text(), re.M)
    assert "index.md" in nav and "composition.md" in nav
    assert not [page for page in nav if not (Path(PROJECT_ROOT) / "docs" / page).is_file()]


def _commands(text: str) -> list[str]:
    """The `invoke ...` command lines a reader would copy: `$ invoke`, indented, or in backticks."""
    found = re.findall(r"^\s*(?:\$ )?(invoke [^\n`]*)$", text, re.M) + re.findall(r"`(invoke [^`]+)`", text)
    return [part.strip() for cmd in found for part in cmd.split("&&") if part.strip().startswith("invoke ")]


def test_every_invoke_command_shown_in_the_readme_and_the_examples_parses() -> None:
    """Each shown command, with --help appended, is one invoke accepts (no `invoke build examples/hello`)."""
    import shlex
    import subprocess
    import sys

    texts = [README.read_text(), *(p.read_text() for p in (PROJECT_ROOT / "examples").rglob("Cargo.toml"))]
    placeholder = re.compile(r"\b[A-Z]{2,}\b")  # `invoke --help TASK`: the reader fills it in
    commands = sorted({c for text in texts for c in _commands(text) if not placeholder.search(c)})
    assert "invoke build --crate examples/hello" in commands and len(commands) > 5, commands
    for cmd in commands:
        argv = shlex.split(cmd.split(" | ")[0])[1:]
        r = subprocess.run([sys.executable, "-m", "invoke", *argv, "--help"], cwd=PROJECT_ROOT, capture_output=True,
                           text=True, timeout=60)
        assert r.returncode == 0, f"{cmd}: {r.stdout[-300:]}{r.stderr[-300:]}"


def test_the_readme_test_command_is_exactly_what_ci_runs() -> None:
    """The README's second command is .ci/run's: CI runs what a new user is told to run."""
    ci = [ln.strip() for ln in (PROJECT_ROOT / ".ci" / "run").read_text().splitlines() if "nox" in ln]
    readme = [ln.strip() for ln in README.read_text().splitlines() if ln.strip().startswith("apt-get update")]
    assert len(ci) == 1 and readme == ci, (ci, readme)
