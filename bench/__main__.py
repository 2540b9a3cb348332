"""compatbuild benchmarks: ratios measured in one run, printed as Markdown tables.

    python -m bench [startup] [uptodate] [inputs] [image] [build] [linkers] [backends] [registry]
    (or: nox -s bench -- inputs)
    python -m bench --help                                                     (or: --list)

These machines are noisy, so every number is compared with a baseline measured in the same
run, interleaved, and the median of several repetitions is kept. The measuring machinery is
bench/harness.py; each benchmark is its own module (bench/NAME.py) with a ``run(work)``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import backends, build, harness, image, inputs, linkers, registry, startup, uptodate  # noqa: E402

BENCHMARKS: dict[str, ModuleType] = {"startup": startup, "uptodate": uptodate, "inputs": inputs, "image": image,
                                     "build": build, "linkers": linkers, "backends": backends, "registry": registry}


def usage() -> str:
    width = max(map(len, BENCHMARKS))
    listing = "\n".join(f"  {name:<{width}}  {mod.SUMMARY}" for name, mod in BENCHMARKS.items())
    return (f"usage: python -m bench [NAME...]   (or: nox -s bench -- NAME...; no NAME runs them all, in this order)\n"
            f"\nbenchmarks:\n{listing}\n"
            "\nEach is compared with a baseline measured in the same run, interleaved; medians are kept.\n")


def main(argv: list[str]) -> None:
    if any(a in ("-h", "--help", "--list") for a in argv):
        print(usage(), end="")
        return
    which = argv or list(BENCHMARKS)
    unknown = [w for w in which if w not in BENCHMARKS]
    if unknown:
        raise SystemExit(f"bench: unknown benchmark {', '.join(unknown)} (have: {', '.join(BENCHMARKS)})")
    harness.header()
    for name in which:
        module = BENCHMARKS[name]
        with harness.work_dir(name) as work:
            harness.table(module.TITLE, module.run(work))


if __name__ == "__main__":
    main(sys.argv[1:])
