"""No credential reaches a user's screen: every message passes the one redaction (tasks.errors.redact)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tasks.errors import ConfigError, RegistryError, redact
from tasks.settings import PROJECT_ROOT

SECRET = "Hunter2pw"


def _invoke(*args: str, env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("INVOKE_COMPATBUILD_")}
    full.update({"INVOKE_COMPATBUILD_CACHE": str(tmp_path / "cache"), **env})
    return subprocess.run([sys.executable, "-m", "invoke", *args], cwd=PROJECT_ROOT, env=full,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(("args", "env"), [
    (["images"], {"DOCKER_HOST": f"tcp://deploy:{SECRET}@127.0.0.1:9"}),
    (["image", "--push", f"deploy:{SECRET}@127.0.0.1:9/team/x"], {"DOCKER_HOST": f"tcp://u:{SECRET}@127.0.0.1:9"}),
    (["download"], {"INVOKE_COMPATBUILD_MIRRORS": f'["https://deploy:{SECRET}@mirror.invalid/"]'}),
    (["download"], {"INVOKE_COMPATBUILD_MIRRORS": f'{{"https://a/": 3, "x": "https://u:p@{SECRET}@m/"}}'}),
])
def test_an_error_carrying_a_credential_prints_it_as_stars(args: list[str], env: dict[str, str],
                                                           tmp_path: Path) -> None:
    r = _invoke(*args, env=env, tmp_path=tmp_path)
    assert r.returncode != 0
    assert "Traceback" not in r.stderr
    assert SECRET not in r.stdout + r.stderr, r.stderr
    assert "***" in r.stderr, r.stderr


@pytest.mark.parametrize("text", [
    f"https://user:{SECRET}@host/x",
    f"https://user:p@{SECRET}@host/x",  # a raw '@' in the password
    f"https://user:p@{SECRET}@@host/x",
    f"https://user:p#{SECRET}@host/x",  # a raw '#' (urlparse would take it for a fragment)
    f"user:{SECRET}@registry.example:5000/team/x",
    f"user:p@{SECRET}@registry.example:5000/team/x",  # no scheme, a raw '@' in the password
    f"user:{SECRET}@registry.example:5000/team/x@sha256:{'a' * 64}",
    f"https://host/x?token={SECRET}&y=1",
    f"tcp://user:{SECRET}@[::1]:2375",
    f"tcp://user:p@{SECRET}@127.0.0.1:2375",
    f"/work/main/https:/user:{SECRET}@host/x.toml",  # a URL given as a path: Path() ate a '/'
    f"{{'https://a/': {{'user': 'deploy', 'password': '{SECRET}'}}}}",  # a config mapping's repr
    f'{{"https://a/": {{"password": "{SECRET}"}}}}',  # ... and its JSON
    f"['deploy:p@{SECRET}@m/x']",
])
def test_the_one_redaction_hides_every_credential_form(text: str) -> None:
    assert SECRET not in redact(text)
    assert SECRET not in str(ConfigError(f"config value {text!r}"))  # errors redact themselves
    assert SECRET not in str(RegistryError(text))


@pytest.mark.parametrize(("text", "want"), [
    (f"'reg/x?token={SECRET}' must be", "'reg/x?token=***' must be"),  # the closing quote is kept
    (f"{{'password': '{SECRET}', 'user': 'u'}}", "{'password': '***', 'user': 'u'}"),
    (f'{{"token": "{SECRET}"}}', '{"token": "***"}'),  # still JSON
    (f"https://u:p@{SECRET}@host/x", "https://***@host/x"),  # to the last '@' before the host
    (f"u:p@{SECRET}@host:5000/x", "***@host:5000/x"),
])
def test_the_redaction_keeps_the_text_around_a_credential(text: str, want: str) -> None:
    assert redact(text) == want


def _pinned_lock(tmp_path: Path, *, url: str = "") -> Path:
    """The shipped lockfile with one (unfetchable) RPM pin, so `image` gets past its pin check
    to the registry; ``url``: one more artifact fetched from there."""
    text = (PROJECT_ROOT / "rsrc.lock.toml").read_text()
    text += ('\n[[rpm]]\nname = "glibc"\ntarget = "fedora20"\n'
             'url = "https://rpms.invalid/glibc-2.18-11.fc20.x86_64.rpm"\n'
             f'sha256 = "{"a" * 64}"\n')
    if url:
        text += f'\n[[artifact]]\nname = "secret"\nurl = "{url}"\nsha256 = "{"b" * 64}"\n'
    path = tmp_path / "rsrc.lock.toml"
    path.write_text(text)
    return path


REGISTRIES = [f"deploy:{SECRET}@127.0.0.1:9/team/x", f"deploy:p@{SECRET}@127.0.0.1:9/team/x",
              f"https://deploy:p@{SECRET}@127.0.0.1:9/team/x", f"127.0.0.1:9/team/x?token={SECRET}"]


@pytest.mark.parametrize("where", ["--pull", "--push", "env", "build --json"])
@pytest.mark.parametrize("registry", REGISTRIES)
def test_a_registry_holding_a_credential_is_refused_in_stars(where: str, registry: str, tmp_path: Path) -> None:
    lock = str(_pinned_lock(tmp_path))
    env = {"INVOKE_COMPATBUILD_REGISTRY": registry} if where in ("env", "build --json") else {}
    args = {"--pull": ["image", "--lock", lock, "--pull", registry],
            "--push": ["image", "--lock", lock, "--push", registry],
            "env": ["image", "--lock", lock],
            "build --json": ["build", "--json", "--lock", lock]}[where]
    if where == "--push":  # the push is checked after the build: let the build stop at once, offline
        env["DOCKER_HOST"] = "unix:///nonexistent.sock"
    r = _invoke(*args, env=env, tmp_path=tmp_path)
    assert r.returncode in (6, 42), r.stderr
    assert "Traceback" not in r.stderr and SECRET not in r.stdout + r.stderr, r.stderr
    if r.returncode == 42:
        assert "***" in r.stderr


@pytest.mark.parametrize(("yaml", "env"), [
    (f"compatbuild:\n  mirrors:\n    https://a/: {{user: deploy, password: {SECRET}}}\n", {}),
    (f"compatbuild:\n  mirrors:\n    https://a/: [deploy:p@{SECRET}@m]\n", {}),
    (f"compatbuild:\n  mirrors: https://deploy:p@{SECRET}@m/\n", {}),
    ("", {"INVOKE_COMPATBUILD_MIRRORS": f'["deploy:p@{SECRET}@m/x"]'}),
    ("", {"INVOKE_COMPATBUILD_MIRRORS": f'{{"https://a/": {{"password": "{SECRET}"}}}}'}),
    ("", {"INVOKE_COMPATBUILD_MIRRORS": f'{{"https://a/": "deploy:p@{SECRET}@m"'}),  # not JSON
    (f"compatbuild:\n  lock: https://u:{SECRET}@h/x.toml\n", {}),
    (f"compatbuild:\n  max_download: https://u:p@{SECRET}@h/\n", {}),
    (f"compatbuild:\n  deadline: u:p@{SECRET}@h\n", {}),
])
def test_a_malformed_config_value_holding_a_credential_is_refused_in_stars(yaml: str, env: dict[str, str],
                                                                         tmp_path: Path) -> None:
    cfg = []
    if yaml:
        (tmp_path / "invoke.yaml").write_text(yaml)
        cfg = ["-f", str(tmp_path / "invoke.yaml")]
    r = _invoke(*cfg, "download", env=env, tmp_path=tmp_path)
    assert r.returncode in (2, 15), r.stderr
    assert "Traceback" not in r.stderr and SECRET not in r.stdout + r.stderr, r.stderr
    assert "***" in r.stderr, r.stderr


@pytest.mark.parametrize("url", [f"http://deploy:p@{SECRET}@127.0.0.1:9/x.tgz",
                                 f"http://127.0.0.1:9/x.tgz?token={SECRET}"])
def test_a_download_error_for_a_url_holding_a_credential_is_in_stars(url: str, tmp_path: Path) -> None:
    r = _invoke("download", "--lock", str(_pinned_lock(tmp_path, url=url)), "--only", "secret",
                env={}, tmp_path=tmp_path)
    assert r.returncode == 3, r.stderr
    assert SECRET not in r.stdout + r.stderr and "***" in r.stderr, r.stderr


@pytest.mark.parametrize("host", [f"tcp://deploy:{SECRET}@127.0.0.1:9", f"tcp://deploy:p@{SECRET}@127.0.0.1:9",
                                  f"ssh://deploy:{SECRET}@127.0.0.1:9", f"deploy:{SECRET}@127.0.0.1:9"])
@pytest.mark.parametrize("args", [["images"], ["build", "--json"], ["smoke", "--json"]])
def test_a_docker_host_holding_a_credential_is_in_stars(host: str, args: list[str], tmp_path: Path) -> None:
    r = _invoke(*args, env={"DOCKER_HOST": host}, tmp_path=tmp_path)
    assert r.returncode == 6, r.stderr
    assert "Traceback" not in r.stderr and SECRET not in r.stdout + r.stderr, r.stderr
    assert "***" in r.stderr, r.stderr


def test_a_json_document_is_redacted_too(tmp_path: Path) -> None:
    """--json documents are an exit of their own: every string in them passes the redaction."""
    import json

    from tasks import present
    from tasks.dlopen.smoke import SmokeResult
    from tasks.inputs.lockfile import load

    lock = load(PROJECT_ROOT / "rsrc.lock.toml")
    error = f"cannot pull deploy:p@{SECRET}@reg/x"  # a message made outside CompatError
    result = SmokeResult(tmp_path / "lib.so", f"tcp://u:{SECRET}@h (container)", 1,
                         f"smoke: dlopen https://u:p@{SECRET}@h/lib.so failed")
    doc = present.smoke_json(lock, [result], error)
    assert SECRET not in doc and json.loads(doc)["error"] == "cannot pull ***@reg/x"


def test_the_redaction_leaves_references_by_digest_alone() -> None:
    ref = "docker.io/library/fedora:20@sha256:" + "a" * 64
    assert redact(f"cannot pull {ref}") == f"cannot pull {ref}"
