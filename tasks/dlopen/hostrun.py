"""`smoke --host 'CMD'`: the real host program loads the library, on the place's own glibc.

Loading alone cannot see what only the host calls (a module's init function, an
extension's entry point): the real program can. ``CMD`` is a shell command with
placeholders for the library as the host looks for it:

- ``{module}``: its module name, ``mymod`` from ``libmymod.so`` (the ``lib`` prefix and
  everything after the first dot dropped);
- ``{path}``: where it is offered, under the name hosts look for: ``<dir>/mymod.so``
  (Python imports ``mymod.so``, Lua's ``require`` finds ``./mymod.so``, sqlite3 derives
  ``sqlite3_mymod_init`` from it);
- ``{dir}``: the folder it is offered in, which is also the command's working directory.

For example ``python3 -c "import {module}"``, ``lua5.1 -e 'require("{module}")'``,
``sqlite3 :memory: ".load {path}"``. It runs in the smoke image (as nobody, offline) and
on this machine; a sysroot has no programs to run. A place without the program says so:
a failure in the target's image for ``invoke smoke`` (the user asked for it there), a note
on this machine and in ``smoke --matrix`` (the matrix runs it where it exists). A failure
is the program's own last line.
"""

from __future__ import annotations

import re
import shlex
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tasks import proc
from tasks.errors import ConfigError, SmokeError

IN_IMAGE = "/plugin"  # where the library is offered in the smoke image
NOT_HERE = "compatbuild: host program not found"  # the image script's line when the program is absent
TIMEOUT = 120
_PLACEHOLDER = re.compile(r"\{(path|dir|module)\}")
_PROGRAM = re.compile(r"^[A-Za-z0-9_.+/-]+$")
_MODULE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class Offer:
    """The library as a host looks for it: ``module`` (``mymod``) in ``filename`` (``mymod.so``)."""

    module: str
    filename: str

    @classmethod
    def of(cls, library: Path) -> Offer:
        stem = library.name.split(".", 1)[0]
        module = stem[3:] if stem.startswith("lib") and len(stem) > 3 else stem
        if not _MODULE.match(module):
            raise SmokeError(f"{library.name}: no module name a host could import can be made from it "
                             f"({module!r}); name the library lib<identifier>.so")
        return cls(module, f"{module}.so")


@dataclass(frozen=True)
class HostCommand:
    """A host program's command line, ``template`` with placeholders; ``program`` is its first word."""

    template: str
    program: str

    @classmethod
    def parse(cls, text: str) -> HostCommand:
        """ConfigError for an empty or unparsable command, or one that names no library."""
        try:
            words = shlex.split(text)
        except ValueError as exc:
            raise ConfigError(f"--host {text!r}: {exc} (quote it as a shell would)") from None
        if not words:
            raise ConfigError("--host needs a command, e.g. --host 'python3 -c \"import {module}\"'")
        if not _PROGRAM.match(words[0]):
            raise ConfigError(f"--host {text!r}: the command must start with a program name, not {words[0]!r}")
        if not _PLACEHOLDER.search(text):
            raise ConfigError(f"--host {text!r} never names the library: use {{module}}, {{path}} or {{dir}}")
        return cls(text, words[0])

    def expand(self, offer: Offer, folder: str) -> str:
        """The command for ``offer`` offered in ``folder``: only the three placeholders are replaced."""
        values = {"module": offer.module, "dir": folder, "path": f"{folder}/{offer.filename}"}
        return _PLACEHOLDER.sub(lambda m: values[m.group(1)], self.template)

    def image_script(self, offer: Offer) -> str:
        """The ``sh -c`` script for the smoke image: into the folder, the program or NOT_HERE, the command."""
        return (f"cd {IN_IMAGE} || exit 1\n"
                f"command -v {self.program} >/dev/null 2>&1 || {{ echo '{NOT_HERE}'; exit 127; }}\n"
                f"{self.expand(offer, IN_IMAGE)}\n")


@dataclass(frozen=True)
class HostRun:
    """What the host program did: its exit ``status`` and ``output``; ``absent`` when it is not there."""

    command: HostCommand
    status: int
    output: str
    where: str
    absent: bool = False

    @property
    def ok(self) -> bool:
        return self.status == 0 and not self.absent

    @property
    def note(self) -> str:
        """For a result's host note: ``python3 ran it`` or ``python3 not on this machine``."""
        return f"{self.command.program} not in {self.where}" if self.absent else f"{self.command.program} ran it"

    @property
    def failure(self) -> str:
        """The result's failure line (``smoke: host ...``, which SmokeResult.error finds)."""
        if self.absent:
            return f"smoke: host program {self.command.program} is not in {self.where}; the host run needs it there"
        said = proc.last_line(self.output.split("\nstack traceback:", 1)[0])  # Lua: the error, not its trace
        if self.status > 128:
            return f"smoke: host {self.command.program} died of signal {self.status - 128}: {said}"
        return f"smoke: host {self.command.program} exited {self.status}: {said}"


def in_image_result(command: HostCommand, status: int, output: str, where: str) -> HostRun:
    """A run of :meth:`HostCommand.image_script` in the smoke image, as a HostRun."""
    absent = status == 127 and NOT_HERE in output
    return HostRun(command, status, output.replace(NOT_HERE + "\n", ""), where, absent=absent)


def run_native(command: HostCommand, library: Path) -> HostRun:
    """The program on this machine, in a scratch folder holding the library under its host name."""
    where = "this machine"
    if shutil.which(command.program) is None:
        return HostRun(command, 127, "", where, absent=True)
    offer = Offer.of(library)
    with tempfile.TemporaryDirectory(prefix="compatbuild-host-") as folder:
        shutil.copyfile(library, Path(folder) / offer.filename)
        done = proc.run(["sh", "-c", command.expand(offer, folder)], what=f"smoke --host {command.program}",
                        timeout=TIMEOUT, error=SmokeError, cwd=Path(folder), merge_stderr=True)
    return HostRun(command, done.returncode, done.stdout, where)
