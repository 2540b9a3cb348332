"""The invoke command line's start and end: its config-file errors as one line, its exit cheap.

The end: :func:`exit_without_collecting`. The start, invoke's own errors over its config files,
as compatbuild's one line and exit 15:

invoke reads and merges its config files (``invoke.yaml`` beside tasks.py, ``-f FILE`` or
``INVOKE_RUNTIME_CONFIG``, ``~/.invoke.yaml``, ``/etc/invoke.yaml``) before any task runs. A
file that is not YAML, one that is a list, one whose ``compatbuild`` is a string, or a setting
that is a mapping where compatbuild's default is not (``jobs: {a: 1}``, ``registry: {…}``) ends
in invoke's traceback: a YAML ``ParserError``, ``AttributeError: 'list' object has no attribute
'items'``, ``AmbiguousMergeError``. compatbuild has no program of its own where the command line
starts (``invoke`` is the program), so the earliest place it can answer is the import of its
collection, which invoke does before it reads ``invoke.yaml`` and merges any file: there,
under the invoke command line only, :func:`install` sets a ``sys.excepthook`` that takes an
exception raised inside ``invoke/config.py``, reads each of those files itself, and words the
first bad one as a :class:`~tasks.errors.ConfigError` naming the file (exit 15, through
``os._exit``: an excepthook cannot choose the exit code, and nothing has started by then).
Every other exception goes to the hook that was there before.

Not covered: a ``~/.invoke.yaml`` or ``/etc/invoke.yaml`` that is not YAML at all, which invoke
parses before it imports any collection (and on which every invoke project fails).
"""

from __future__ import annotations

import atexit
import gc
import json
import os
import sys
from pathlib import Path
from types import TracebackType
from typing import Any

import invoke.config
import invoke.util

from tasks.errors import ConfigError, redact
from tasks.settings import PROJECT_ROOT, check_config_document

SUFFIXES = ("yaml", "yml", "json")  # invoke's invoke.py files are Python: not read here
_INVOKE_CONFIG = str(Path(invoke.config.__file__).resolve())
yaml: Any = invoke.util.yaml  # type: ignore[attr-defined]  # the YAML invoke parses its files with


def install() -> None:
    """Word invoke's config-file errors as compatbuild's one line (see the module's docstring)."""
    previous = sys.excepthook

    def hook(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        if not _from_invoke_config(tb):
            previous(kind, exc, tb)
            return
        print(f"compatbuild: {config_error(exc)}", file=sys.stderr)
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(ConfigError.exit_code)

    sys.excepthook = hook


def exit_without_collecting() -> None:
    """At the command line's exit, leave the objects still alive to the OS instead of collecting them.

    An interpreter that has loaded the pipeline, the Docker SDK and pyelftools spends 60-100 ms
    of its exit in the garbage collector's passes over every object left (measured here, a
    third of what compatbuild adds to an edited build), then the OS frees the memory anyway.
    ``gc.freeze()`` moves them out of the collector's reach (reference counting still frees
    what it frees; no file compatbuild writes waits for a collection: each is closed where it
    is written, :mod:`tasks.atomic`). Registered first, so it runs after every other exit handler.
    """
    atexit.register(gc.freeze)


def _from_invoke_config(tb: TracebackType | None) -> bool:
    """True for an exception raised while invoke loads or merges its config: inside
    invoke/config.py, with no frame of this project's own code (a task's bug stays a traceback)."""
    files = []
    while tb is not None:
        name = tb.tb_frame.f_code.co_filename
        if not name.startswith("<"):  # not "<frozen runpy>", which would resolve under the cwd
            files.append(str(Path(name).resolve()))
        tb = tb.tb_next
    # code in the checkout is ours, but not an installed package that happens to live there
    # (nox's .nox/, a .venv/): their invoke would otherwise count as this project's code
    ours = f"{PROJECT_ROOT}{os.sep}"
    installed = (f"{os.sep}site-packages{os.sep}", f"{os.sep}dist-packages{os.sep}")
    return _INVOKE_CONFIG in files and not any(f.startswith(ours) and not any(i in f for i in installed)
                                               for f in files)


def config_error(exc: BaseException, argv: list[str] | None = None) -> str:
    """The one line for an error invoke raised over its config: the first config file that is
    not a valid document, named; else invoke's own first line."""
    for path in config_files(sys.argv if argv is None else argv):
        try:
            check_config_document(_load(path))
        except ConfigError as error:
            return f"{path}: {error}"
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return redact(f"invoke cannot load its configuration: {first}")


def config_files(argv: list[str]) -> list[Path]:
    """The config files invoke reads, in the order it merges them, that exist."""
    found = [Path(f"{stem}.{suffix}") for stem in ("/etc/invoke", f"{Path.home()}/.invoke",
                                                   f"{PROJECT_ROOT}/invoke") for suffix in SUFFIXES]
    runtime = _runtime_flag(argv) or os.environ.get("INVOKE_RUNTIME_CONFIG")
    if runtime:
        found.append(Path(runtime))
    return [p for p in found if p.is_file()]


def _runtime_flag(argv: list[str]) -> str | None:
    """The value of invoke's ``-f``/``--config`` in ``argv``."""
    for i, arg in enumerate(argv):
        if arg in ("-f", "--config") and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--config="):
            return arg.partition("=")[2]
        if arg.startswith("-f") and len(arg) > 2 and not arg.startswith("--"):
            return arg[2:]
    return None


def _load(path: Path) -> Any:
    """A config file's document; ConfigError when it cannot be read or parsed."""
    kind = "JSON" if path.suffix == ".json" else "YAML"
    try:
        text = path.read_text(encoding="utf-8")
        return json.loads(text) if kind == "JSON" else yaml.safe_load(text)
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not {kind}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except ValueError as exc:  # json.JSONDecodeError
        raise ConfigError(f"not {kind}: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        raise ConfigError(f"not {kind}: {getattr(exc, 'problem', None) or exc}{where}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read it: {exc.strerror or exc}") from None
