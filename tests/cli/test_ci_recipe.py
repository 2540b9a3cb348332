"""The CI recipes in examples/ci cannot rot: every `invoke TASK --flag` in them parses.

Each recipe is read as YAML, every shell line it runs is split into commands, and each
``invoke ...`` command is handed to invoke's own parser built from the real collection
(``tasks.cli.ns``): an unknown task or flag, or a flag given to the wrong task, fails.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from invoke.exceptions import ParseError
from invoke.parser import Parser

from tasks.cli import ns
from tasks.settings import PROJECT_ROOT

RECIPES = sorted((PROJECT_ROOT / "examples" / "ci").glob("*.yml"))
EXPRESSION = re.compile(r"\$\{\{[^}]*\}\}")  # GitHub's ${{ ... }}: a value, for the parser
OPERATORS = {"|", "||", "&", "&&", ";", ";;", ">", ">>", "<", "(", ")"}


def shell_lines(node: object) -> Iterator[str]:
    """Every string a recipe runs: GitHub's ``run:`` and GitLab's script lists."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "run" and isinstance(value, str):
                yield value
            elif key in ("script", "before_script", "after_script") and isinstance(value, list):
                yield from (v for v in value if isinstance(v, str))
            else:
                yield from shell_lines(value)
    elif isinstance(node, list):
        for item in node:
            yield from shell_lines(item)


def invoke_commands(script: str) -> Iterator[list[str]]:
    """The argument lists after each ``invoke`` word, up to the next shell operator."""
    text = EXPRESSION.sub("X", script.replace("\\\n", " "))
    for line in text.splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        words = list(lexer)
        for i, word in enumerate(words):
            if word == "invoke":
                args: list[str] = []
                for w in words[i + 1:]:
                    if w in OPERATORS:
                        break
                    args.append(w)
                yield args


def parse(args: list[str]) -> list[str]:
    """invoke's own parse of one command line against the real collection; the task names."""
    parser = Parser(contexts=ns.to_contexts(), ignore_unknown=False)
    return [ctx.name for ctx in parser.parse_argv(args) if ctx.name]


@pytest.mark.parametrize("recipe", RECIPES, ids=[p.name for p in RECIPES])
def test_every_invoke_command_in_the_recipe_names_real_tasks_and_flags(recipe: Path) -> None:
    doc = yaml.safe_load(recipe.read_text())
    commands = [args for script in shell_lines(doc) for args in invoke_commands(script)]
    used = {name for args in commands for name in parse(args)}
    assert {"image", "build", "audit", "smoke"} <= used, used  # the recipe really runs the pipeline
    assert any("--push" in args for args in commands) and any("--pull" in args for args in commands)
    assert all("--json" in args for args in commands if args and args[0] in ("build", "audit", "smoke"))


def test_the_parser_refuses_a_flag_no_task_has() -> None:
    with pytest.raises(ParseError):
        parse(["build", "--target", "centos7", "--no-such-flag"])
    with pytest.raises(ParseError):
        parse(["smoke", "--push", "x"])  # a real flag, but image's, not smoke's


def test_the_github_recipe_covers_both_targets_and_the_download_cache() -> None:
    doc = yaml.safe_load((PROJECT_ROOT / "examples" / "ci" / "github-actions.yml").read_text())
    job = doc["jobs"]["cdylib"]
    assert job["strategy"]["matrix"]["target"] == ["fedora20", "centos7"]
    cache = [s for s in job["steps"] if str(s.get("uses", "")).startswith("actions/cache")]
    assert [s["with"]["path"] for s in cache] == ["~/.cache/compatbuild/sha256"]
    zig = [args for step in doc["jobs"]["cdylib-zig"]["steps"] if "run" in step
           for args in invoke_commands(step["run"])]
    assert ["build", "--backend", "zig"] == zig[0][:3]  # the Docker-free job builds with zig
    assert any(args[:2] == ["smoke", "--matrix"] for args in zig)  # and proves it on every glibc in reach
