"""tasks.errors: every error class lives there, with an exit code of its own."""

from __future__ import annotations

import ast
import importlib
import pkgutil

import tasks
from tasks.errors import CompatError
from tasks.settings import PROJECT_ROOT

RESERVED = {0: "success", 1: "a disk error the task layer reports", 130: "an interrupt"}


def _all_modules() -> None:
    """Import every module under tasks/, so every CompatError subclass is defined."""
    for info in pkgutil.walk_packages(tasks.__path__, "tasks."):
        importlib.import_module(info.name)


def _subclasses(cls: type[CompatError]) -> list[type[CompatError]]:
    found: list[type[CompatError]] = []
    for sub in cls.__subclasses__():
        found += [sub, *_subclasses(sub)]
    return found


def test_every_compat_error_lives_in_errors_py_with_a_distinct_exit_code() -> None:
    _all_modules()
    ours = [c for c in _subclasses(CompatError) if c.__module__.split(".")[0] == "tasks"]
    assert len(ours) >= 17  # the walk found them: LockfileError (2) to ToolError (18)
    assert [c.__qualname__ for c in ours if c.__module__ != "tasks.errors"] == []
    by_code: dict[int, list[str]] = {}
    for c in ours:
        assert "exit_code" in vars(c), f"{c.__name__} inherits its exit code"
        by_code.setdefault(c.exit_code, []).append(c.__name__)
    shared = {code: names for code, names in by_code.items() if len(names) > 1}
    assert shared == {}
    assert {code: by_code[code] for code in RESERVED if code in by_code} == {}
    assert all(0 < code < 126 for code in by_code)  # 126+ mean "not run" / a signal to a shell


def test_no_module_raises_the_bare_base_class() -> None:
    bare = []
    for path in sorted((PROJECT_ROOT / "tasks").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call) \
                    and isinstance(node.exc.func, ast.Name) and node.exc.func.id == "CompatError":
                bare.append(f"{path.relative_to(PROJECT_ROOT)}:{node.lineno}")
    assert bare == []
