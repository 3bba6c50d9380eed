"""A database's settings: declared defaults, validation, the mode from the MPM, the budget.

Settings come from the ``Database(...)`` arguments first, then
``PythonOption modpy_safe.db.<name>.<setting>``, then :data:`DEFAULTS`. Every
value passes a cast that names what is allowed (see ``_options``).
"""
from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from typing import Any

from .._apache import ServerFacts
from .._errors import ConfigError
from .._options import DB_SETTINGS, Options, check
from .._redact import redact_dsn
from .driver import driver_class

__all__ = ["MODES", "DEFAULTS", "CASTS", "POOL_MAX_OUTSIDE_HTTPD", "validate_given", "settle",
           "warn_over_budget"]

log = logging.getLogger("modpy_safe.pool")

MODES = ("auto", "persistent", "pooled", "per-request")

#: Defaults of the settings; pool_max None means "from the MPM" (ThreadsPerChild).
DEFAULTS: dict[str, Any] = {key: option.default for key, option in DB_SETTINGS.items()}
#: pool_max outside httpd, where there is no ThreadsPerChild to follow.
POOL_MAX_OUTSIDE_HTTPD = 10
#: The casts of the settings given in code, the same as the options'.
CASTS: dict[str, Callable[[str], Any]] = {key: option.cast for key, option in DB_SETTINGS.items()}
_NAME = re.compile(r"^[A-Za-z0-9_-]+$")


def _check_dsn(label: str, dsn: str, driver: str) -> str:
    validate: Callable[[str], str] = driver_class(driver).validate_dsn
    return check(label, dsn, validate, shown=redact_dsn(dsn))


def validate_given(name: object, values: Mapping[str, Any]) -> dict[str, Any]:
    """Check the arguments given in code; return the ones that were given."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(
            f"Database argument name has value {name!r}: allowed: letters, digits, '_' and '-' "
            f"(it is part of the option names modpy_safe.db.<name>.<setting>)."
        )
    given: dict[str, Any] = {}
    for key, value in values.items():
        if value is None or (key == "mode" and value == "auto"):
            continue
        label = f"Database(name={name!r}) argument {key}"
        if key == "dsn":
            if not isinstance(value, str):
                raise ConfigError(
                    f"{label} must be a str (a libpq DSN or URI), not {type(value).__name__}."
                )
            given[key] = value
        elif isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise ConfigError(f"{label} has value {value!r}: allowed: a number or a string.")
        else:
            given[key] = check(label, str(value), CASTS[key])
    if "dsn" in given:
        given["dsn"] = _check_dsn(f"Database(name={name!r}) argument dsn", given["dsn"],
                                  given.get("driver", DEFAULTS["driver"]))
    return given


def settle(name: str, given: Mapping[str, Any], options: Options | None,
           facts: ServerFacts | None) -> tuple[dict[str, Any], str]:
    """Return the settings of database ``name`` and the mode they choose for this MPM."""
    settings = dict(DEFAULTS)
    from_options: set[str] = set()
    for key, option in DB_SETTINGS.items():
        if key in given:
            settings[key] = given[key]
        elif options is not None and options.is_set(option, name):
            settings[key] = options.value(option, name)
            from_options.add(key)
    if not settings["dsn"]:
        raise ConfigError(
            f"Database {name!r} has no DSN: pass it as Database(dsn, ...) or set "
            f"'PythonOption modpy_safe.db.{name}.dsn \"host=... dbname=...\"'."
        )
    if "dsn" in from_options or "driver" in from_options:
        source = options.source if options is not None else "PythonOption"
        settings["dsn"] = _check_dsn(f"{source} modpy_safe.db.{name}.dsn", settings["dsn"],
                                     settings["driver"])
    mode = settings["mode"]
    if mode == "auto":
        mode = "pooled" if facts is not None and facts.threaded else "persistent"
    threads = facts.threads_per_child if facts is not None else POOL_MAX_OUTSIDE_HTTPD
    size = 1 if mode == "persistent" else (settings["pool_max"] or threads)
    settings["pool_max"] = size
    if settings["pool_min"] > size:
        raise ConfigError(
            f"Database {name!r}: pool_min ({settings['pool_min']}) is larger than "
            f"pool_max ({size}); allowed: pool_min at most pool_max."
        )
    return settings, mode


def warn_over_budget(name: str, mode: str, driver: Any, conn: Any, facts: ServerFacts,
                     per_process: int) -> None:
    """Warn once if every process opening its maximum could exceed max_connections."""
    worst = facts.max_processes * per_process
    try:
        limit, max_conn, reserved = driver.budget_limit(conn)
    except Exception as exc:  # the check must never fail a request
        log.info("database %r: could not read max_connections (%s)", name,
                 driver.describe_error(exc))
        return
    if worst > limit:
        log.warning(
            "database %r (%s) may open up to %d connections (%d processes x %d) but the "
            "server accepts %d (max_connections %d - %d superuser_reserved_connections): "
            "%d too many. Lower pool_max (PythonOption modpy_safe.db.%s.pool_max), lower "
            "MaxRequestWorkers/ServerLimit, or put PgBouncer in transaction mode in between.",
            name, mode, worst, facts.max_processes, per_process, limit,
            max_conn, reserved, worst - limit, name,
        )
