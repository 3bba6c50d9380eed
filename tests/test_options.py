"""The typed option reader: casts, defaults, and messages that say what is allowed."""
from __future__ import annotations

import pytest

from modpy_safe import ConfigError
from modpy_safe._options import Options, as_bool, as_choice, as_int, as_seconds, options_for


def test_unset_option_gives_the_default():
    assert Options({}).get("reload.interval", as_seconds(), 1.0) == 1.0


def test_value_is_cast():
    opts = Options({"modpy_safe.reload.interval": "0.25", "modpy_safe.x.flag": "Off"})
    assert opts.get("reload.interval", as_seconds(), 1.0) == 0.25
    assert opts.get("x.flag", as_bool, True) is False


@pytest.mark.parametrize(
    ("raw", "cast", "allowed"),
    [
        ("soon", as_seconds(), "a number of seconds of at least 0"),
        ("-1", as_seconds(), "a number of seconds of at least 0"),
        ("nan", as_seconds(), "a number of seconds of at least 0"),
        ("3.5", as_int(minimum=1, maximum=64), "a whole number of at least 1 and at most 64"),
        ("0", as_int(minimum=1), "a whole number of at least 1"),
        ("maybe", as_bool, "On or Off"),
        ("pooling", as_choice("auto", "persistent", "pooled"), "auto, persistent, pooled"),
    ],
)
def test_bad_value_names_option_value_and_what_is_allowed(raw, cast, allowed):
    opts = Options({"modpy_safe.area.setting": raw})
    with pytest.raises(ConfigError) as info:
        opts.get("area.setting", cast, None)
    message = str(info.value)
    assert "PythonOption modpy_safe.area.setting" in message
    assert repr(raw) in message
    assert allowed in message


def test_bad_dsn_option_never_shows_the_password():
    opts = Options({"modpy_safe.db.main.dsn": "host=db password=hunter22 dbname=x"})

    def reject(raw: str) -> str:
        raise ValueError("allowed: a libpq connection string")

    with pytest.raises(ConfigError) as info:
        opts.get("db.main.dsn", reject, None)
    assert "hunter22" not in str(info.value)
    assert "hunter22" not in repr(opts)
    assert "password=***" in str(info.value)


def test_only_modpy_safe_options_are_kept_and_listed():
    opts = Options({"modpy_safe.db.a.dsn": "x", "modpy_safe.db.b.mode": "pooled", "other": "1"})
    assert sorted(opts.names("db.")) == ["db.a.dsn", "db.b.mode"]
    assert "other" not in opts
    assert "db.a.dsn" in opts


def test_options_are_parsed_once_per_distinct_configuration():
    first = options_for({"modpy_safe.reload.interval": "2", "mod_python.x": "y"})
    second = options_for({"mod_python.x": "z", "modpy_safe.reload.interval": "2"})
    third = options_for({"modpy_safe.reload.interval": "3"})
    assert first is second
    assert third is not first
