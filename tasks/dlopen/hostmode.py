"""Smoke with the host's API present, everything else strict: the host modes.

A plugin leaves its host's API undefined (:mod:`tasks.elf.hostsyms`); a bare
``dlopen(RTLD_NOW)`` of it fails with ``undefined symbol``. The harness can first load,
with ``RTLD_NOW | RTLD_GLOBAL`` (``--preload``), something that defines them:

- ``stub``: a C library generated for exactly the library's host symbols (a function
  returning 0 for each function or untyped symbol, a zeroed object of its size for each
  data object), built with ``-nostdlib`` so it needs nothing itself: every glibc and
  libgcc_s need of the plugin is still resolved, and version-checked, by the real loader;
- ``--host-lib PATH``: the host's real library (``libpython3.9.so.1.0``), so its real
  symbols are checked; one it lacks is the loader's own ``undefined symbol: X``;
- ``--host-symbols FILE``: what the host exports, one name a line; a host symbol outside
  it fails before anything is loaded; the rest are stubbed;
- ``strict``: nothing preloaded (a plugin that must need nothing from its host).

Whatever the mode, ``--host 'CMD'`` (:mod:`tasks.dlopen.hostrun`) then has the real host
program load the library too.

``auto`` (the default, config ``compatbuild.host_mode``) is stub when the library has host
symbols, else strict.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tasks.dlopen.hostrun import HostCommand
from tasks.elf.hostsyms import HostSymbol, host_symbols, left_to_host
from tasks.errors import ConfigError
from tasks.settings import HOST_MODES as MODES

DATA_SIZE = 256  # bytes of a data object whose size the library does not record
MISSING_STATUS = 6  # a SmokeResult status: a host symbol outside --host-symbols


@dataclass(frozen=True)
class HostMode:
    """How the host's symbols are provided: ``mode`` (MODES), a real ``host_lib``, an
    ``exports`` list (read from ``exports_from``); and a real host ``command`` to run after
    the harness, which places without its program skip when ``program_optional`` (the matrix)."""

    mode: str = "auto"
    host_lib: str = ""
    exports: frozenset[str] | None = None
    exports_from: str = ""
    command: HostCommand | None = None
    program_optional: bool = False

    @classmethod
    def load(cls, mode: str = "auto", host_lib: str = "", host_symbols_file: str = "",
             command: str = "") -> HostMode:
        """From the flags and config: ConfigError for an unknown mode, a contradiction, an unreadable
        list, a host command that cannot be parsed."""
        mode = mode or "auto"
        if mode not in MODES:
            raise ConfigError(f"host mode must be one of {', '.join(MODES)}, not {mode!r}")
        if mode == "strict" and (host_lib or host_symbols_file):
            given = "--host-lib" if host_lib else "--host-symbols"
            raise ConfigError(f"{given} provides the host's symbols; host mode strict provides none: give one")
        exports: frozenset[str] | None = None
        if host_symbols_file:
            try:
                text = Path(host_symbols_file).expanduser().read_text(errors="replace")
            except OSError as exc:
                raise ConfigError(f"--host-symbols {host_symbols_file}: {exc.strerror or exc}") from None
            exports = frozenset(w for line in text.splitlines()
                                if (w := line.split("#", 1)[0].strip()))
        return cls(mode, host_lib, exports, host_symbols_file, HostCommand.parse(command) if command else None)


STRICT = HostMode("strict")


@dataclass(frozen=True)
class HostPlan:
    """What one smoke run preloads for one library: a stub of ``stub``, or ``host_lib``.

    ``symbols`` are the library's host symbols on that place; ``missing``, those outside
    the ``--host-symbols`` list (then nothing is loaded).
    """

    mode: HostMode
    symbols: tuple[HostSymbol, ...] = ()
    stub: tuple[HostSymbol, ...] = ()
    host_lib: str = ""
    missing: tuple[str, ...] = ()

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.symbols]

    @property
    def note(self) -> str:
        """What the host provided, for the result: ``57 symbols left to the host: ...``."""
        if self.host_lib and self.symbols:
            return f"{left_to_host(self.names)}; from {self.host_lib}"
        if self.host_lib:
            return f"preloaded {self.host_lib}"
        return left_to_host(self.names) if self.stub else ""

    failure_status = MISSING_STATUS

    @property
    def failure(self) -> str:
        """The one line that fails the run before loading, or ""."""
        if not self.missing:
            return ""
        listed = ", ".join(self.missing)
        return (f"smoke: host symbol{'s' if len(self.missing) > 1 else ''} {listed} not in "
                f"{self.mode.exports_from} (what the host exports)")

    def stub_source(self, library: str) -> str:
        return stub_source(self.stub, library)

    def material(self) -> dict[str, object]:
        """What the verdict cache keys on: the mode, the stub's source, the host library, the list,
        the host command."""
        exports = sorted(self.mode.exports) if self.mode.exports is not None else None
        command = [self.mode.command.template, self.mode.program_optional] if self.mode.command else ""
        return {"mode": self.mode.mode, "host_lib": self.host_lib, "command": command,
                "stub": hashlib.sha256(stub_source(self.stub, "").encode()).hexdigest() if self.stub else "",
                "exports": hashlib.sha256("\n".join(exports).encode()).hexdigest() if exports is not None else ""}


def plan(library: Path, mode: HostMode | None, root: Path | None, host_lib: str = "") -> HostPlan:
    """The plan for ``library`` on a place whose libraries live under ``root`` (a sysroot,
    ``/``; None: the image, judged by the unversioned rule). ``host_lib`` is the host
    library's path as that place sees it (default: ``mode.host_lib``)."""
    mode = mode or HostMode()
    if mode.mode == "strict":
        return HostPlan(mode)
    symbols = host_symbols(library, root)
    if mode.exports is not None:
        missing = tuple(s.name for s in symbols if s.name not in mode.exports)
        if missing:
            return HostPlan(mode, symbols, missing=missing)
    if mode.host_lib:
        return HostPlan(mode, symbols, host_lib=host_lib or mode.host_lib)
    if not symbols and mode.mode == "auto":
        return HostPlan(mode)
    return HostPlan(mode, symbols, stub=symbols)


def stub_source(symbols: Sequence[HostSymbol], library: str) -> str:
    """C defining exactly ``symbols``: no headers, no libc; names bound by asm labels."""
    lines = [f"/* compatbuild host stub{' for ' + library if library else ''}: "
             f"{len(symbols)} symbols a host would define. */"]
    for i, sym in enumerate(symbols):
        label = sym.name.replace("\\", "\\\\").replace('"', '\\"')
        size = sym.size or DATA_SIZE
        if sym.kind == "OBJECT":
            lines.append(f'char cb_obj{i}[{size}] __asm__("{label}") __attribute__((aligned(16))) = {{0}};')
        elif sym.kind == "TLS":
            lines.append(f'__thread char cb_tls{i}[{size}] __asm__("{label}") __attribute__((aligned(16))) = {{0}};')
        else:  # FUNC, NOTYPE (an extern the library calls or reads: loading needs only its address)
            lines.append(f'long cb_fn{i}(void) __asm__("{label}");')
            lines.append(f"long cb_fn{i}(void) {{ return 0; }}")
    return "\n".join(lines) + "\n"


STUB_FLAGS = ("-shared", "-fPIC", "-O0", "-nostdlib")  # the stub needs no library itself
