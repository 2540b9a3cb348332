"""tasks.settings: every value checked, whatever its source; the CLI side is in test_cli.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from tasks.errors import ConfigError
from tasks.settings import DEFAULT_JOBS, DEFAULTS, Settings, env_overrides, parse_jobs


def test_unset_jobs_and_mirrors_mean_four_and_none(tmp_path: Path) -> None:
    s = Settings.from_mapping({**DEFAULTS, "cache": str(tmp_path)})
    assert (s.jobs, dict(s.mirrors), s.progress) == (DEFAULT_JOBS, {}, "auto") == (4, {}, "auto")


@pytest.mark.parametrize(("value", "jobs"), [(8, 8), ("8", 8), (" 2 ", 2), (1, 1)])
def test_jobs_from_yaml_or_text(value: object, jobs: int) -> None:
    assert parse_jobs(value) == jobs


@pytest.mark.parametrize("value", [0, -1, "0", "abc", "", "1.5", 1.5, True, None, "\u0663", [2]])
def test_jobs_that_are_not_a_whole_number_of_one_or_more_are_refused(value: object) -> None:
    with pytest.raises(ConfigError, match=r"^config compatbuild.jobs must be a whole number of 1 "):
        parse_jobs(value)


@pytest.mark.parametrize(("cfg", "text"), [
    ({"mirror": {}}, "config compatbuild.mirror: unknown setting (did you mean mirrors?)"),
    ({"zzz": 1}, "config compatbuild.zzz: unknown setting "
                 "(known: backend, cache, deadline, host_mode, jobs, linker, lock, max_download, mirrors, out, "
                 "progress, registry, remote, target, warm_idle)"),
    ({"progress": True}, "config compatbuild.progress must be one of auto, always, never, not True"),
    ({"mirrors": ["https://a/"]}, "config compatbuild.mirrors must be a mapping of URL prefix to "
                                  "replacement (in the environment: a JSON object), not ['https://a/']"),
    ({"mirrors": {"https://a/": 3}}, "config compatbuild.mirrors must be a mapping of URL prefix to "
                                     "replacement (in the environment: a JSON object), not {'https://a/': 3}"),
    ({"lock": 7}, "config compatbuild.lock must be a path, not 7"),
])
def test_bad_config_is_one_line(cfg: dict[str, object], text: str) -> None:
    with pytest.raises(ConfigError) as err:
        Settings.from_mapping(cfg)
    assert str(err.value) == text


def test_mirrors_from_the_environment_are_a_json_object(tmp_path: Path) -> None:
    env = {"INVOKE_COMPATBUILD_MIRRORS": '{"https://a.invalid/": "file:///m/"}',
           "INVOKE_COMPATBUILD_JOBS": "3", "INVOKE_RUN_ECHO": "1", "PATH": "/bin"}
    over = env_overrides(env)
    assert over == {"mirrors": env["INVOKE_COMPATBUILD_MIRRORS"]}  # invoke reads JOBS itself
    s = Settings.from_mapping({"cache": str(tmp_path), **over})
    assert s.mirror("https://a.invalid/x.tgz") == "file:///m/x.tgz"


def test_an_unknown_environment_name_is_refused_with_a_suggestion() -> None:
    with pytest.raises(ConfigError, match=r"^MYAPP_COMPATBUILD_CAHCE: unknown setting "
                                          r"\(did you mean MYAPP_COMPATBUILD_CACHE\?\)$"):
        env_overrides({"MYAPP_COMPATBUILD_CAHCE": "/tmp"}, prefix="MYAPP_")


def test_registry_and_remote_are_settings_and_remote_is_checked() -> None:
    s = Settings.from_mapping({"registry": " registry.corp:5000/team/stages ", "remote": "yes"})
    assert (s.registry, s.remote) == ("registry.corp:5000/team/stages", "yes")
    assert Settings.from_mapping({}).remote == "auto"
    with pytest.raises(ConfigError) as err:
        Settings.from_mapping({"remote": "maybe"})
    assert "auto, yes, no" in str(err.value)


@pytest.mark.parametrize(("value", "limit"), [(None, 1 << 30), (5000, 5000), ("5000", 5000), ("2K", 2048),
                                              ("3M", 3 << 20), (" 4g ", 4 << 30), ("1G", 1 << 30)])
def test_max_download_is_bytes_with_an_optional_suffix(value: object, limit: int) -> None:
    """The cap on a download without a pinned size (tasks.inputs.lockfile.DOWNLOAD_MAX by default)."""
    assert Settings.from_mapping({} if value is None else {"max_download": value}).max_download == limit


@pytest.mark.parametrize("value", [0, -1, "0", "abc", "", "1.5G", 1.5, True, "2X", [2], {"a": 1}])
def test_a_max_download_that_is_not_a_size_is_one_line(value: object) -> None:
    with pytest.raises(ConfigError, match=r"^config compatbuild\.max_download must be a whole number of bytes "
                                          r"above 0 \(a K, M or G suffix allowed: 2G\), not .*$"):
        Settings.from_mapping({"max_download": value})
