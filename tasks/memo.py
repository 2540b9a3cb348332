"""A task run that would change nothing, answered from its record: what a no-op costs.

A build with nothing changed, a smoke whose verdicts are cached: their answer is already
known, and finding it out again costs more than the answer (the Docker SDK's import alone
is 50 ms, cargo-zigbuild's no-op 0.3 s). So after a run that succeeded, its task records
what it printed and returned beside what that depended on, and the next run with the same
arguments asks only whether any of it changed::

    hit = memo.replay(run)            # None: something changed, or nothing is recorded
    if hit is not None:
        return memo.play(hit)         # says again what the recorded run said; its value
    result = ...the whole run...      # its answer printed through run.say(1), progress not kept
    run.save(pipeline.build_watch(...), result)

A run records only what a run with nothing to do would have said: its answer (the audit and
the libraries, the verdicts), never its progress ("Building ...", "Downloading ..."); a task
whose run did work and said so (a harness that ran, a note said once) records nothing, and
the next run, which has nothing to do, records itself.

What a record names, and how each is checked (every check a miss, never an error):

- **inputs** (sources, the lockfile, compatbuild's own code, toolchain files): each by its
  identity (:func:`tasks.store.identity`: size, mtime, ctime, inode, device — what verify's
  stamps key on), or its absence; a folder's identity changes when an entry is added,
  removed or renamed in it, so a new source file is seen without walking. An input changed
  after the run started is not recorded at all (the run may have read its older bytes).
- **outputs** (the copied libraries, the records and stamps the run wrote): by identity too;
- **environment variables**, by value (unset is a value; ``CARGO_*``: every one it begins,
  ``*`` all of them), kept as a sha256, so no variable's value (a token) is written to the cache;
- **images**, tag → id, asked of a local daemon over its socket
  (:func:`tasks.builder.engine.image_id`: the Docker SDK would cost more to import than a
  whole replayed run); a remote or silent daemon is a miss, and the whole run then talks
  to it through the Docker SDK.

The value is unpickled only for a caller that uses it (``replay(run, value=False)`` for a
task the command line called: invoke drops what it returns).

The key is the task's name and every argument and setting it resolved; the record lives
under ``<cache>/memo/`` and is written atomically, so a half-written one is never read.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import pickle
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

from tasks.builder.engine import image_id
from tasks.settings import PROJECT_ROOT
from tasks.store import identity

VERSION = 2  # 2: environment variables kept as digests
# An input whose ctime is this close to the run's start may have changed after the run read it:
# the kernel stamps ctimes from a clock that lags time.time_ns() by up to a tick.
RACY_NS = 20_000_000
Say = Callable[[str], None]


class Watch(NamedTuple):
    """What a run's result depended on (see the module's list)."""

    inputs: tuple[Path, ...] = ()
    outputs: tuple[Path, ...] = ()
    env: tuple[str, ...] = ()
    images: tuple[str, ...] = ()


class Hit(NamedTuple):
    """A recorded run whose every dependency is unchanged: what it said, and what it returned."""

    lines: list[tuple[int, str]]  # (1: stdout, 2: stderr, line), in order
    value: Any


class Run:
    """One task run's memo: its key, what it said (through :meth:`say`), and its record."""

    def __init__(self, cache: Path, task: str, arguments: Mapping[str, Any]) -> None:
        material = {"task": task, "arguments": arguments, "version": VERSION, "python": sys.version}
        digest = hashlib.sha256(json.dumps(material, sort_keys=True, default=str).encode()).hexdigest()
        self.path = cache / "memo" / f"{task}-{digest[:32]}.json"
        self.started = time.time_ns()
        self.lines: list[tuple[int, str]] = []

    def say(self, stream: int, *, keep: bool = True) -> Say:
        """A ``print`` to stdout (1) or stderr (2) whose lines the record keeps, in order; with
        ``keep=False`` progress that a replay does not repeat ("Building ...": nothing is built then)."""

        def emit(line: str) -> None:
            if keep:
                self.lines.append((stream, line))
            print(line, file=sys.stdout if stream == 1 else sys.stderr)

        return emit

    def save(self, watch: Watch | None, value: Any) -> None:
        """Record this run (nothing when ``watch`` is None: the run cannot be replayed)."""
        if watch is None:
            return
        inputs = _identities([*watch.inputs, *code_files()])
        if inputs is None or any(row is not None and max(row[1], row[2]) >= self.started - RACY_NS
                                 for row in inputs.values()):
            return  # an input changed while the run read it: its result is not that input's
        outputs = _identities(watch.outputs)
        images = {tag: image_id(tag) for tag in watch.images}
        if outputs is None or any(v is None for v in images.values()):
            return
        record = {"inputs": inputs, "outputs": outputs, "images": images,
                  "env": {name: env_digest(name) for name in watch.env},
                  "lines": self.lines, "value": base64.b64encode(pickle.dumps(value)).decode()}
        from tasks.atomic import write_atomic

        try:
            write_atomic(self.path, json.dumps(record).encode())
        except OSError:
            pass  # a cache that cannot be written costs the next run its shortcut, nothing else


def replay(run: Run, *, value: bool = True) -> Hit | None:
    """The recorded answer for ``run`` when nothing it depended on changed, else None.

    ``value=False``: the caller has no use for the recorded value (a task the command line
    called, :func:`tasks.cli.common.value_is_used`), so it is not unpickled (``Hit.value`` is
    None): unpickling imports the modules of every class in it, ~15 ms of dataclass
    definitions for a build's audits, most of what a replay costs over ``invoke --list``.
    """
    try:
        record = json.loads(run.path.read_bytes())
        if (_identities(record["inputs"]) != record["inputs"]
                or _identities(record["outputs"]) != record["outputs"]
                or any(env_digest(k) != v for k, v in record["env"].items())
                or any(image_id(tag) != i for tag, i in record["images"].items())):
            return None
        recorded = _unpickle(record) if value else None
        lines = [(int(s), str(text)) for s, text in record["lines"]]
    except Exception:  # noqa: BLE001 - no record, an old or damaged one: the whole run decides
        return None
    return Hit(lines, recorded)


def value_of(record: Path) -> Any:
    """The value a record file holds, unchecked (for tools that read a plan: the benchmark's floors)."""
    return _unpickle(json.loads(record.read_bytes()))


def _unpickle(record: Mapping[str, Any]) -> Any:
    return pickle.loads(base64.b64decode(record["value"]))  # noqa: S301 - our own cache's bytes


def play(hit: Hit) -> Any:
    """Say again what the recorded run said; its value."""
    for stream, line in hit.lines:
        print(line, file=sys.stdout if stream == 1 else sys.stderr)
    return hit.value


def env_value(name: str) -> str | None:
    """The variable's value (None: unset); for ``PREFIX*``, every variable it begins, as one text."""
    if not name.endswith("*"):
        return os.environ.get(name)
    prefix = name[:-1]
    return json.dumps(sorted((k, v) for k, v in os.environ.items() if k.startswith(prefix)))


def env_digest(name: str) -> str:
    """The sha256 of :func:`env_value` (of its JSON: unset and empty differ)."""
    return hashlib.sha256(json.dumps(env_value(name)).encode()).hexdigest()


def _identities(paths: Iterable[str | Path]) -> dict[str, list[int] | None] | None:
    """Each path's identity (None: absent); None when a path cannot be asked (a permission)."""
    found: dict[str, list[int] | None] = {}
    for p in paths:
        try:
            found[str(p)] = identity(os.lstat(p))
        except FileNotFoundError:
            found[str(p)] = None
        except OSError:
            return None
    return found


def code_files() -> list[Path]:
    """compatbuild's own code and stage folders: a changed rule or Dockerfile is a changed answer."""
    return [PROJECT_ROOT / "tasks.py", *tree([PROJECT_ROOT / "tasks", PROJECT_ROOT / "docker"],
                                            lambda here, files: os.path.basename(here) == "__pycache__")]


def tree(folders: Iterable[Path], skip: Callable[[str, list[str]], bool] = lambda here, files: False) -> list[Path]:
    """Every folder and file under ``folders``; a folder ``skip(path, its files)`` says is not
    an input (a cargo target dir) is left out with everything under it, as is ``.git``."""
    found: list[Path] = []
    for top in folders:
        for here, dirs, files in os.walk(top):
            if here != str(top) and skip(here, files):
                dirs[:] = []
                continue
            dirs[:] = sorted(d for d in dirs if d != ".git")
            found.append(Path(here))
            found += [Path(here, f) for f in sorted(files)]
    return found
