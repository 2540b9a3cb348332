"""tasks.backends.outputs: what a build writes into ``--out``, and what it refuses to replace.

A build writes ``<out>/<target>/lib*.so`` and ``last-build.json``; a file of that name
that compatbuild did not make there (the user's own library, their own last-build.json)
is refused with one line and exit 12, as every other output (tasks.atomic) is, and left
as it was. What compatbuild wrote is listed in the folder's marker, so its own outputs of
every earlier build (of any crate) are replaced as before.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tasks.backends import outputs
from tasks.backends.crate import CrateInfo
from tasks.errors import OutputError
from tasks.inputs.lockfile import load
from tasks.settings import PROJECT_ROOT

LOCK = load(PROJECT_ROOT / "rsrc.lock.toml")


def built(tmp_path: Path, name: str, data: bytes = b"\x7fELF new") -> Path:
    lib = tmp_path / "target" / name
    lib.parent.mkdir(parents=True, exist_ok=True)
    lib.write_bytes(data)
    return lib


def info(tmp_path: Path) -> CrateInfo:
    return CrateInfo(tmp_path, "hello", ("hello",), tmp_path / "Cargo.toml", tmp_path)


def record(out_dir: Path, libs: list[Path], tmp_path: Path) -> None:
    outputs.write_record(out_dir, libs, info(tmp_path), LOCK, image="img", release=True, seconds=1.0)


def test_the_users_own_library_in_the_output_folder_is_refused_and_kept(tmp_path: Path) -> None:
    out_dir = outputs.output_dir(tmp_path / "out", LOCK)
    out_dir.mkdir(parents=True)
    (out_dir / "libhello.so").write_bytes(b"the user's own")
    with pytest.raises(OutputError, match=r"libhello\.so exists and was not made by compatbuild; refusing "
                       r"to replace it \(remove it yourself or choose another --out\)$") as err:
        outputs.copy_out(built(tmp_path, "libhello.so"), out_dir)
    assert err.value.exit_code == 12
    assert (out_dir / "libhello.so").read_bytes() == b"the user's own"


def test_the_users_own_last_build_json_is_refused_before_any_library_is_copied(tmp_path: Path) -> None:
    out_dir = outputs.output_dir(tmp_path / "out", LOCK)
    out_dir.mkdir(parents=True)
    (out_dir / outputs.RECORD).write_text('{"mine": true}\n')
    with pytest.raises(OutputError, match=r"last-build\.json exists and was not made by compatbuild"):
        outputs.copy_out(built(tmp_path, "libhello.so"), out_dir)
    assert not (out_dir / "libhello.so").exists()
    with pytest.raises(OutputError, match=r"last-build\.json exists and was not made by compatbuild"):
        record(out_dir, [], tmp_path)
    assert (out_dir / outputs.RECORD).read_text() == '{"mine": true}\n'


def test_what_compatbuild_wrote_there_is_replaced_build_after_build(tmp_path: Path) -> None:
    out_dir = outputs.output_dir(tmp_path / "out", LOCK)
    first = outputs.copy_out(built(tmp_path, "libfoo.so", b"foo 1"), out_dir)
    record(out_dir, [first], tmp_path)
    second = outputs.copy_out(built(tmp_path, "libbar.so", b"bar 1"), out_dir)  # another crate
    record(out_dir, [second], tmp_path)
    again = outputs.copy_out(built(tmp_path, "libfoo.so", b"foo 2"), out_dir)  # the first one again
    record(out_dir, [again], tmp_path)
    assert again.read_bytes() == b"foo 2"
    assert json.loads((out_dir / outputs.RECORD).read_text())["libraries"] == [str(again)]


def test_an_output_folder_from_before_the_marker_is_still_compatbuilds(tmp_path: Path) -> None:
    """A folder an older compatbuild wrote (a record naming its libraries, no marker) is not refused."""
    out_dir = outputs.output_dir(tmp_path / "out", LOCK)
    out_dir.mkdir(parents=True)
    (out_dir / "libhello.so").write_bytes(b"old build")
    record_text = {"libraries": [str(out_dir / "libhello.so")], "crate": str(tmp_path), "name": "hello",
                   "image": "img", "target": {"name": "fedora20", "glibc": "2.18"}, "release": True,
                   "time": "2025-01-01T00:00:00+00:00", "seconds": 1.0}
    (out_dir / outputs.RECORD).write_text(json.dumps(record_text))
    lib = outputs.copy_out(built(tmp_path, "libhello.so"), out_dir)
    record(out_dir, [lib], tmp_path)
    assert lib.read_bytes() == b"\x7fELF new"


def test_invoke_build_out_refuses_the_users_own_files_with_exit_12(tmp_path: Path, profile_cache: Path) -> None:
    """The whole command, zig backend (no Docker): one line, exit 12, the user's file as it was."""
    import os
    import subprocess
    import sys

    out = tmp_path / "mine"
    (out / "centos7").mkdir(parents=True)
    (out / "centos7" / "libhello.so").write_bytes(b"the user's own")
    env = {k: v for k, v in os.environ.items() if not k.startswith("INVOKE_COMPATBUILD_")}
    env["INVOKE_COMPATBUILD_CACHE"] = str(profile_cache / "store")  # wheels and zig install paid once
    r = subprocess.run([sys.executable, "-m", "invoke", "build", "--backend", "zig", "--target", "centos7",
                        "--out", str(out)], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True,
                       timeout=900, check=False)
    assert r.returncode == 12, r.stderr
    [line] = [t for t in r.stderr.splitlines() if t.startswith("compatbuild:")]
    assert line.endswith("libhello.so exists and was not made by compatbuild; refusing to replace it "
                         "(remove it yourself or choose another --out)"), r.stderr
    assert "Traceback" not in r.stderr
    assert (out / "centos7" / "libhello.so").read_bytes() == b"the user's own"
    assert not (out / "centos7" / outputs.RECORD).exists()
