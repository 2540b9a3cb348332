"""One library's smoke result, wherever it ran: plain data, cheap to load (a replayed run's
answer, :mod:`tasks.memo`, is made of these and needs nothing else of the smoke machinery)."""

from __future__ import annotations

import dataclasses
import signal
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class SmokeResult:
    """One library's smoke run: where it ran, the harness's exit status and output."""

    library: Path
    where: str
    status: int
    output: str
    host: str = ""  # what the host mode provided: "57 symbols left to the host: ..." ("": nothing)
    cached: bool = dataclasses.field(default=False, compare=False)  # a verdict kept from an earlier run

    @property
    def ok(self) -> bool:
        return self.status == 0

    @property
    def text(self) -> str:
        """``loaded``, ``loaded (57 symbols left to the host: ...)``, or the failure line."""
        if not self.ok:
            return self.error or "failed"
        return f"loaded ({self.host})" if self.host else "loaded"

    @property
    def error(self) -> str | None:
        """The harness's own failure line (with dlerror text), or None when it passed."""
        if self.ok:
            return None
        for line in self.output.splitlines():
            if line.startswith(("smoke: dlopen ", "smoke: dlsym ", "smoke: preload ", "smoke: host ",
                                "smoke: refused: ")):
                return line.removeprefix("smoke: ")
        if self.status < 0:
            try:
                name = signal.Signals(-self.status).name
            except ValueError:
                name = f"signal {-self.status}"
            return f"the harness died of {name} (crash inside the library?)"
        if self.status >= 128:  # docker reports a killed process as 128 + signal
            return f"the harness died of signal {self.status - 128} (crash inside the library?)"
        last = self.output.strip().splitlines()[-1:] or ["no output"]
        return f"the harness exited {self.status}: {last[0]}"
