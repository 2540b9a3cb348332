"""The measuring machinery every benchmark shares: run a command and time it, interleave runs
against their baselines and keep the medians, print a Markdown table, make a temporary work dir.

These machines are noisy, so every number is compared with a baseline measured in the same
run, interleaved, and the median of several repetitions is kept. Nothing here keeps state
between calls: a command's output is returned to whoever ran it.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parent.parent
PLUGIN = ROOT / "bench" / "crates" / "plugin"

Row = tuple[str, str, str, str]


class Completed(NamedTuple):
    """One command that succeeded: its wall seconds and its stdout, line by line."""

    seconds: float
    lines: list[str]


def run_output(args: list[str], env: dict[str, str] | None = None, cwd: Path = ROOT) -> Completed:
    """Run a command to completion (it must succeed); its wall seconds and stdout lines.

    Python's bytecode cache is on, as it is by default for a user: a ``PYTHONDONTWRITEBYTECODE``
    in this environment (these machines set it) would compile every module from source on
    every run, about 0.1 s of start-up that no user pays.
    """
    base = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    start = time.perf_counter()
    done = subprocess.run(args, cwd=cwd, env={**base, **(env or {})}, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"bench: {' '.join(args)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return Completed(elapsed, done.stdout.splitlines())


def run(args: list[str], env: dict[str, str] | None = None, cwd: Path = ROOT) -> float:
    """Run a command to completion (it must succeed); return wall seconds."""
    return run_output(args, env, cwd).seconds


def stage_times(lines: list[str]) -> str:
    """'rust 33 s, builder 9 s' from a run's "Built stage X in Ns" lines."""
    parts = [f"{ln.split()[2]} {ln.split()[4]}" for ln in lines if ln.startswith("Built stage")]
    return ", ".join(parts) or "none"


def invoke(*args: str) -> list[str]:
    return [sys.executable, "-m", "invoke", *args]


def interleave(reps: int, **cmds: Callable[[], float]) -> dict[str, float]:
    """Run each measurement ``reps`` times, interleaved; the median of each."""
    samples: dict[str, list[float]] = {k: [] for k in cmds}
    for _ in range(reps):
        for name, fn in cmds.items():
            samples[name].append(fn())
    return {k: statistics.median(v) for k, v in samples.items()}


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bench_cache(default: Path) -> Path:
    """The store to use: ``$COMPATBUILD_BENCH_CACHE`` if set (to reuse a warm one), else ``default``."""
    return Path(os.environ.get("COMPATBUILD_BENCH_CACHE", str(default)))


def copy_crate(src: Path, dest: Path) -> Path:
    """A private copy of a crate to build and touch, without its target dir."""
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns("target"))
    return dest


def edit(source: Path) -> None:
    """A one-line edit of ``source``: a new comment line, so its bytes (and mtime) change, as an edit's do."""
    lines = source.read_text().splitlines()
    n = sum(1 for line in lines if line.startswith("// bench edit "))
    source.write_text("\n".join([*lines, f"// bench edit {n + 1}"]) + "\n")


@contextmanager
def work_dir(name: str) -> Iterator[Path]:
    """A temporary directory for one benchmark, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix=f"bench-{name}-") as tmp:
        yield Path(tmp)


def header() -> None:
    print(f"compatbuild benchmarks, {time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores; medians, one run")


def table(title: str, rows: list[Row]) -> None:
    print(f"\n### {title}\n")
    print("| measurement | value | baseline | ratio |")
    print("| --- | --- | --- | --- |")
    for r in rows:
        print(f"| {' | '.join(r)} |")
    sys.stdout.flush()
