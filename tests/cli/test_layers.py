"""The task layer's shape: cli/ composes nothing, and loading the collection loads no heavy library."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

from tasks.settings import PROJECT_ROOT

# What a task may use: the one composer, its words, settings and errors, and its own helpers; and the
# two shortcuts a task takes before it loads the composer (a replay, a build's head start).
ALLOWED = {"tasks.pipeline", "tasks.present", "tasks.settings", "tasks.errors", "tasks.memo",
           "tasks.backends.headstart"}
HEAVY = ["docker", "requests", "urllib3", "elftools", "tomlkit", "rich", "gnupg", "rpmfile", "filelock"]


def _is_module(name: str) -> bool:
    """Whether ``name`` is one of the project's modules (``from tasks.backends import headstart``)."""
    path = PROJECT_ROOT.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _imports(tree: ast.AST) -> list[tuple[int, str]]:
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [f"{node.module}.{a.name}" if _is_module(f"{node.module}.{a.name}") else node.module
                     for a in node.names]
            found += [(node.lineno, n) for n in names]
    return found


def test_cli_imports_only_the_pipeline_present_settings_errors_and_itself() -> None:
    bad = []
    for path in sorted((PROJECT_ROOT / "tasks" / "cli").glob("*.py")):
        for line, name in _imports(ast.parse(path.read_text(), str(path))):
            if name.startswith("tasks") and name not in ALLOWED and not name.startswith("tasks.cli"):
                bad.append(f"{path.name}:{line} imports {name}")
    assert bad == []


def test_no_product_module_imports_the_tests() -> None:
    bad = []
    for path in [*sorted((PROJECT_ROOT / "tasks").rglob("*.py")), PROJECT_ROOT / "tasks.py",
                 *sorted((PROJECT_ROOT / "bench").rglob("*.py"))]:
        for line, name in _imports(ast.parse(path.read_text(), str(path))):
            if name == "tests" or name.startswith("tests."):
                bad.append(f"{path.relative_to(PROJECT_ROOT)}:{line} imports {name}")
    assert bad == []


def test_loading_the_collection_imports_no_heavy_library() -> None:
    probe = ("import json, sys; from invoke.loader import FilesystemLoader; "
             "m, _ = FilesystemLoader(start=sys.argv[1]).load('tasks'); "
             "assert hasattr(m, 'release'); "
             f"print(json.dumps(sorted(n for n in {HEAVY!r} if n in sys.modules)))")
    out = subprocess.run([sys.executable, "-c", probe, str(PROJECT_ROOT)], capture_output=True, text=True,
                         check=True, timeout=60, cwd=PROJECT_ROOT).stdout
    assert json.loads(out) == []


# Each imports its heavy library inside the function that needs it, so a no-op run stays cheap.
LIGHT_AT_IMPORT = ["tasks.backends.outputs", "tasks.elf.audit", "tasks.elf.fixup", "tasks.dlopen.smoke",
                   "tasks.inputs.download", "tasks.inputs.verify", "tasks.store", "tasks.atomic",
                   "tasks.builder.docker_client", "tasks.builder.stages", "tasks.backends.docker"]


def test_importing_the_library_modules_imports_no_heavy_library() -> None:
    probe = ("import importlib, json, sys; "
             f"[importlib.import_module(m) for m in {LIGHT_AT_IMPORT!r}]; "
             f"print(json.dumps(sorted(n for n in {HEAVY!r} if n in sys.modules)))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True, timeout=60, cwd=PROJECT_ROOT).stdout
    assert json.loads(out) == []


def test_every_task_bound_in_tasks_py_stays_a_task_after_every_module_loaded() -> None:
    """A package under tasks/ named like a task (an `audit/` beside `audit`) would replace the binding."""
    probe = ("import importlib, pkgutil, sys; from invoke.loader import FilesystemLoader; "
             "from invoke.tasks import Task; "
             "m, _ = FilesystemLoader(start=sys.argv[1]).load('tasks'); "
             "[importlib.import_module(i.name) for i in pkgutil.walk_packages(m.__path__, 'tasks.')]; "
             "print(sorted(n for n in m.__all__ if n != 'ns' and not isinstance(getattr(m, n), Task)))")
    out = subprocess.run([sys.executable, "-c", probe, str(PROJECT_ROOT)], capture_output=True, text=True,
                         check=True, timeout=60, cwd=PROJECT_ROOT).stdout
    assert out.strip() == "[]"


def test_a_run_of_invoke_keeps_the_bytecode_of_compatbuilds_modules(tmp_path: Path) -> None:
    """invoke switches the bytecode cache off (no ``--write-pyc``), which compiled every module of
    tasks/ from source on every command; compatbuild keeps the interpreter's own setting."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(tmp_path)  # where the bytecode goes: nothing written in the checkout
    subprocess.run([sys.executable, "-m", "invoke", "--list"], capture_output=True, text=True, check=True,
                   timeout=60, cwd=PROJECT_ROOT, env=env)
    written = {p.name.split(".")[0] for p in tmp_path.joinpath(*PROJECT_ROOT.parts[1:], "tasks", "cli").glob("*.pyc")}
    assert {"crates", "builder", "inputs", "common", "startup"} <= written
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # and a user's own "no" still holds
    other = tmp_path / "off"
    env["PYTHONPYCACHEPREFIX"] = str(other)
    subprocess.run([sys.executable, "-m", "invoke", "--list"], capture_output=True, text=True, check=True,
                   timeout=60, cwd=PROJECT_ROOT, env=env)
    assert not list(other.rglob("*.pyc"))


def test_the_command_line_leaves_what_is_alive_at_exit_to_the_os() -> None:
    """The collector's passes over every object left at exit cost 60-100 ms of an edited build;
    the command line freezes them as it ends (tasks/cli/startup.py), after every other exit handler."""
    probe = ("import atexit, gc, sys; sys.argv = ['invoke', '--list']; "
             "atexit.register(lambda: print('frozen' if gc.get_freeze_count() else 'collected')); "
             "from invoke.main import program; program.run()")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60,
                         cwd=PROJECT_ROOT).stdout
    assert out.splitlines()[-1] == "frozen"
