"""The option table and its reader: casts, defaults, a cache that cannot mix them, the docs."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from modpy_safe import ConfigError
from modpy_safe._options import (
    DB_SETTINGS,
    OPTIONS,
    RELOAD_INTERVAL,
    Option,
    Options,
    _declare,
    as_bool,
    as_choice,
    as_int,
    as_seconds,
    find_option,
    options_for,
)

REFERENCE = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"


def test_unset_option_gives_the_default():
    assert Options({}).value(RELOAD_INTERVAL) == 1.0


def test_value_is_cast():
    opts = Options({"modpy_safe.reload.interval": "0.25"})
    assert opts.value(RELOAD_INTERVAL) == 0.25


def test_one_name_has_one_cast_and_default_so_the_cache_cannot_mix_them():
    # Readers pass the declared Option, not a (cast, default) of their own, and
    # a name cannot be declared a second time with another default.
    with pytest.raises(ValueError, match="declared twice"):
        _declare("reload.interval", as_seconds(), 99.0, "99", "a second declaration")
    assert OPTIONS["reload.interval"] is RELOAD_INTERVAL
    assert Options({}).value(RELOAD_INTERVAL) == 1.0


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
    option = Option("area.setting", cast, None, "not set", "a test option")
    opts = Options({"modpy_safe.area.setting": raw})
    with pytest.raises(ConfigError) as info:
        opts.value(option)
    message = str(info.value)
    assert "PythonOption modpy_safe.area.setting" in message
    assert repr(raw) in message
    assert allowed in message


def test_bad_dsn_option_never_shows_the_password():
    opts = Options({"modpy_safe.db.main.dsn": "host=db password=hunter22 dbname=x"})

    def reject(raw: str) -> str:
        raise ValueError("allowed: a libpq connection string")

    with pytest.raises(ConfigError) as info:
        opts.value(Option("db.<name>.dsn", reject, None, "none", "a test option"), "main")
    assert "hunter22" not in str(info.value)
    assert "hunter22" not in repr(opts)
    assert "password=***" in str(info.value)


def test_only_modpy_safe_options_are_kept_and_listed():
    opts = Options({"modpy_safe.db.a.dsn": "x", "modpy_safe.db.b.mode": "pooled", "other": "1"})
    assert sorted(opts.names("db.")) == ["db.a.dsn", "db.b.mode"]
    assert opts.raw("other") is None
    assert opts.is_set(DB_SETTINGS["dsn"], "a") and not opts.is_set(DB_SETTINGS["dsn"], "b")


def test_a_misspelt_option_is_reported_as_unknown():
    opts = Options({"modpy_safe.relaod.interval": "2", "modpy_safe.db.main.pool_max": "3",
                    "modpy_safe.db.main.pool_size": "3"})
    assert opts.unknown() == ["modpy_safe.db.main.pool_size", "modpy_safe.relaod.interval"]
    assert find_option("modpy_safe.db.main.pool_max") == (DB_SETTINGS["pool_max"], "main")


def test_options_are_parsed_once_per_distinct_configuration():
    first = options_for({"modpy_safe.reload.interval": "2", "mod_python.x": "y"})
    second = options_for({"mod_python.x": "z", "modpy_safe.reload.interval": "2"})
    third = options_for({"modpy_safe.reload.interval": "3"})
    assert first is second
    assert third is not first


def _reference_rows() -> dict[str, str]:
    """Return option name -> default column of every table row in the reference."""
    rows: dict[str, str] = {}
    family = ""
    for line in REFERENCE.read_text(encoding="utf-8").splitlines():
        heading = re.match(r"\| setting \(`modpy_safe\.(\w+)\.<name>\.…`\)", line)
        if heading:
            family = heading.group(1)
            continue
        if line.startswith("## "):
            family = ""
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) < 3:
            continue
        name = re.fullmatch(r"`(modpy_safe\.[\w.<>]+|\w+)`", cells[0])
        if not name:
            continue
        key = name.group(1)
        if key.startswith("modpy_safe."):
            rows[key[len("modpy_safe."):]] = cells[1]
        elif family:
            rows[f"{family}.<name>.{key}"] = cells[1]
    return rows


def test_the_reference_lists_every_declared_option_with_its_default():
    rows = _reference_rows()
    missing = sorted(set(OPTIONS) - set(rows))
    assert not missing, f"docs/configuration.md has no row for {missing}"
    undeclared = sorted(set(rows) - set(OPTIONS))
    assert not undeclared, f"docs/configuration.md documents undeclared options {undeclared}"
    for name, option in OPTIONS.items():
        assert option.default_doc in rows[name], (
            f"docs/configuration.md gives {name}'s default as {rows[name]!r}; "
            f"the table says {option.default_doc!r}")
