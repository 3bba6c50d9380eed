"""One typed reader for configuration: PythonOption values in httpd, a dict in tests.

Every option of modpy_safe is declared once in :data:`OPTIONS` (name, cast,
default, what the reference says) and read through :class:`Options`, which
casts it, applies the default and, for a bad value, raises
:class:`~modpy_safe.ConfigError` naming the option, the value and what is
allowed. docs/configuration.md is checked against the table by the tests, and
``modpy-safe check`` validates a configuration with the same casts.
"""
from __future__ import annotations

import dataclasses
import ipaddress
import re
import shlex
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Generic, TypeVar

from ._errors import ConfigError
from ._redact import redact_dsn

__all__ = ["Options", "Option", "OPTIONS", "options_for", "PREFIX", "FOREIGN", "PHASE_HANDLERS",
           "FILTER_HANDLERS", "as_handler_specs", "as_bool", "as_seconds",
           "as_int", "as_choice", "as_paths", "as_networks", "as_handler_spec", "find_option"]

PREFIX = "modpy_safe."
#: Options of mod_python itself that modpy_safe honours, read under their own names.
FOREIGN = frozenset({"mod_python.importer.path"})

T = TypeVar("T")

# A cast takes the raw string and returns the value, or raises ValueError with
# a sentence that says what is allowed.
Cast = Callable[[str], T]


def as_bool(raw: str) -> bool:
    """Read on/off, true/false, yes/no, 1/0 (any case)."""
    value = raw.strip().lower()
    if value in ("1", "on", "true", "yes"):
        return True
    if value in ("0", "off", "false", "no"):
        return False
    raise ValueError("allowed: On or Off (also true/false, yes/no, 1/0)")


def as_seconds(*, minimum: float = 0.0, maximum: float | None = None) -> Cast[float]:
    """Return a cast for a number of seconds within ``[minimum, maximum]``."""

    def cast(raw: str) -> float:
        try:
            value = float(raw)
        except ValueError:
            value = float("nan")
        ok = value == value and value >= minimum and (maximum is None or value <= maximum)
        if not ok:
            upper = f" and at most {maximum:g}" if maximum is not None else ""
            raise ValueError(f"allowed: a number of seconds of at least {minimum:g}{upper}")
        return value

    return cast


def as_int(*, minimum: int = 0, maximum: int | None = None) -> Cast[int]:
    """Return a cast for a whole number within ``[minimum, maximum]``."""

    def cast(raw: str) -> int:
        try:
            value = int(raw.strip())
        except ValueError:
            value = None
        if value is None or value < minimum or (maximum is not None and value > maximum):
            upper = f" and at most {maximum}" if maximum is not None else ""
            raise ValueError(f"allowed: a whole number of at least {minimum}{upper}")
        return value

    return cast


def as_choice(*choices: str) -> Cast[str]:
    """Return a cast that accepts one of ``choices`` (case-insensitive)."""

    def cast(raw: str) -> str:
        value = raw.strip().lower()
        if value not in choices:
            raise ValueError("allowed: " + ", ".join(choices))
        return value

    return cast


def as_paths(raw: str) -> tuple[str, ...]:
    """Read a ``:``-separated list of directories."""
    return tuple(part for part in raw.split(":") if part.strip())


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def as_networks(raw: str) -> tuple[Network, ...]:
    """Read addresses and networks separated by spaces or commas (``10.0.0.0/8 ::1``)."""
    found: list[Network] = []
    for word in raw.replace(",", " ").split():
        try:
            found.append(ipaddress.ip_network(word, strict=False))
        except ValueError:
            raise ValueError(f"allowed: IP addresses or networks such as 127.0.0.1, "
                             f"10.0.0.0/8 or ::1, separated by spaces; {word!r} is "
                             f"neither") from None
    if not found:
        raise ValueError("allowed: at least one IP address or network")
    return tuple(found)


def as_handler_spec(raw: str) -> tuple[str, str]:
    """Split ``file[::name]`` into the relative or absolute ``.py`` path and the name."""
    path, _, name = raw.partition("::")
    path, name = path.strip(), name.strip() or "handler"
    if not path or not name.isidentifier():
        raise ValueError("allowed: a path to a .py file or a module name, optionally "
                         "followed by ::<name of a function or Handler class>")
    if not path.endswith(".py"):
        if "/" in path or not all(part.isidentifier() for part in path.split(".")):
            raise ValueError("allowed: a path ending in .py, or a dotted module name "
                             "such as 'mymodule' or 'pkg.mod'")
        path = path.replace(".", "/") + ".py"
    return path, name


def as_handler_specs(raw: str) -> tuple[str, ...]:
    """Read one or more ``file[::name]`` separated by spaces (shell quoting for spaces in paths)."""
    try:
        specs = tuple(shlex.split(raw))
    except ValueError as exc:
        raise ValueError(f"{exc}; allowed: file.py[::callable], several separated by "
                         "spaces") from None
    if not specs:
        raise ValueError("allowed: file.py[::callable], several separated by spaces")
    for spec in specs:
        as_handler_spec(spec)
    return specs


def as_directory(raw: str) -> str | None:
    """Read an absolute directory path (its existence is checked by what uses it)."""
    value = raw.strip()
    if not value.startswith("/"):
        raise ValueError("allowed: an absolute directory path, such as /var/tmp")
    return value


def as_text(raw: str) -> str:
    """Take the value as written (checked later by what uses it, e.g. a driver's DSN parser)."""
    return raw


# ----------------------------------------------------------------- the table


@dataclasses.dataclass(frozen=True)
class Option(Generic[T]):
    """One ``PythonOption modpy_safe.<name>``: how it is read and what the reference says.

    ``name`` may hold one ``<name>`` part (``db.<name>.dsn``): a family of
    options, one per database. ``default_doc`` is the default as the reference
    shows it.
    """

    name: str
    cast: Cast[T]
    default: T
    default_doc: str
    doc: str

    @property
    def full_name(self) -> str:
        return PREFIX + self.name

    def key(self, param: str | None = None) -> str:
        """Return the full option name, with ``param`` in place of ``<name>``."""
        if "<name>" in self.name:
            if param is None:
                raise TypeError(f"option {self.full_name} needs its <name>")
            return PREFIX + self.name.replace("<name>", param)
        return PREFIX + self.name


#: Every option of modpy_safe, by name (after ``modpy_safe.``).
OPTIONS: dict[str, Option[Any]] = {}


def _declare(name: str, cast: Cast[T], default: T, default_doc: str, doc: str) -> Option[T]:
    """Add an option to the table; a name is declared once, so it has one cast and default."""
    if name in OPTIONS:
        raise ValueError(f"option modpy_safe.{name} is declared twice")
    option = Option(name, cast, default, default_doc, doc)
    OPTIONS[name] = option
    return option


_NO_PATHS: tuple[str, ...] = ()

HANDLER = _declare(
    "handler", as_handler_spec, ("", ""), "not set",
    "The file (and callable) that serves every request of the section.")
FORMS_MAX_BODY = _declare(
    "forms.max_body", as_int(minimum=0), 16 * 1024 * 1024, "16777216",
    "The largest urlencoded or multipart request body, in bytes (0: no limit).")
FORMS_MAX_PARTS = _declare(
    "forms.max_parts", as_int(minimum=1, maximum=1_000_000), 1000, "1000",
    "The most parts a multipart body may have.")
FORMS_MAX_FIELD_SIZE = _declare(
    "forms.max_field_size", as_int(minimum=0), 1024 * 1024, "1048576",
    "The largest text field of a multipart body, in bytes (0: no limit).")
FORMS_MAX_FILE_SIZE = _declare(
    "forms.max_file_size", as_int(minimum=0), 0, "0",
    "The largest file part of a multipart body, in bytes (0: only max_body applies).")
FORMS_MAX_HEADER_SIZE = _declare(
    "forms.max_header_size", as_int(minimum=256, maximum=1024 * 1024), 4096, "4096",
    "The longest header line of one multipart part, in bytes.")
FORMS_MAX_HEADERS = _declare(
    "forms.max_headers", as_int(minimum=1, maximum=1_000_000), 8, "8",
    "The most headers one multipart part may have.")
FORMS_SPOOL_SIZE = _declare(
    "forms.spool_size", as_int(minimum=0), 1024 * 1024, "1048576",
    "A file part larger than this is moved to a temporary file (0: always).")
FORMS_TEMP_DIR = _declare(
    "forms.temp_dir", as_directory, None, "the system's",
    "Where file parts are spooled (an absolute directory httpd's User can write).")
STATUS_ALLOW = _declare(
    "status.allow", as_networks, as_networks("127.0.0.0/8 ::1"), "127.0.0.0/8 ::1",
    "Who may read the status page: IP addresses and networks.")
STATUS_DIRECTORY = _declare(
    "status.directory", as_text, "", "next to the `PidFile`",
    "Where each child publishes its state and metric files (server level only).")
RELOAD_INTERVAL = _declare(
    "reload.interval", as_seconds(), 1.0, "1",
    "How often, at most, a request checks its files for changes (seconds).")
RELOAD_PATH = _declare(
    "reload.path", as_paths, _NO_PATHS, "not set",
    "More directories whose modules are reloaded like the handler's own.")

#: The handlers of one phase (or filter), named after the function mod_python calls.
PHASE_NAMES = ("postreadrequesthandler", "transhandler", "headerparserhandler", "inithandler",
               "accesshandler", "authenhandler", "authzhandler", "typehandler", "fixuphandler",
               "loghandler", "cleanuphandler", "inputfilter", "outputfilter")
PHASE_HANDLERS: dict[str, Option[tuple[str, ...]]] = {
    name: _declare(name, as_handler_specs, (), "modpy_safe.handler",
                   f"The handlers of the phase that calls {name}().")
    for name in PHASE_NAMES}
FILTER_HANDLERS: dict[str, Option[tuple[str, ...]]] = {
    name: _declare(f"{name}.<name>", as_handler_specs, (), f"modpy_safe.{name}",
                   f"The {name} of the filter called <name>.")
    for name in ("inputfilter", "outputfilter")}

#: The settings of ``modpy_safe.Database(name=...)``: ``db.<name>.<setting>``.
DB_SETTINGS: dict[str, Option[Any]] = {
    "dsn": _declare("db.<name>.dsn", as_text, None, "none",
                    "The libpq connection string or URI."),
    "driver": _declare("db.<name>.driver", as_choice("psycopg2", "psycopg"), "psycopg2", "psycopg2",
                       "The driver that connects."),
    "mode": _declare("db.<name>.mode", as_choice("auto", "persistent", "pooled", "per-request"),
                     "auto", "auto", "How connections are handed out."),
    "pool_min": _declare("db.<name>.pool_min", as_int(minimum=0, maximum=10000), 0, "0",
                         "Connections kept open even when idle."),
    "pool_max": _declare("db.<name>.pool_max", as_int(minimum=1, maximum=10000), None,
                         "ThreadsPerChild", "Connections per process at most."),
    "timeout": _declare("db.<name>.timeout", as_seconds(minimum=0, maximum=3600), 10.0, "10",
                        "Seconds a request waits for a free connection before 503."),
    "max_lifetime": _declare("db.<name>.max_lifetime", as_seconds(minimum=0), 3600.0, "3600",
                             "A connection older than this is replaced."),
    "max_idle": _declare("db.<name>.max_idle", as_seconds(minimum=0), 600.0, "600",
                         "A connection unused for this long is closed."),
    "ping_after": _declare("db.<name>.ping_after", as_seconds(minimum=0), 10.0, "10",
                           "A connection idle for longer is pinged before use."),
    "reset": _declare("db.<name>.reset", as_choice("rollback", "discard"), "rollback",
                      "rollback", "How a returned connection is cleaned."),
}

_FAMILY = re.compile(r"[A-Za-z0-9_-]+")


def find_option(name: str) -> tuple[Option[Any], str | None] | None:
    """Return the declared option a full or short name belongs to, with its ``<name>`` part."""
    short = name[len(PREFIX):] if name.startswith(PREFIX) else name
    option = OPTIONS.get(short)
    if option is not None:
        return option, None
    head, _, rest = short.partition(".")
    param, _, setting = rest.partition(".")
    option = OPTIONS.get(f"{head}.<name>.{setting}" if setting else f"{head}.<name>")
    if option is not None and _FAMILY.fullmatch(param):
        return option, param
    return None


class Options:
    """Typed, validated access to ``modpy_safe.*`` options.

    ``mapping`` is what ``req.get_options()`` returns inside httpd, or a plain
    dict in tests. ``source`` names where the values came from in messages.
    Values are read through the declared :class:`Option` objects, so a name has
    one cast and one default and the cache is right by construction.
    ``plans`` holds what the request side builds once per configuration.
    """

    __slots__ = ("_raw", "source", "_cache", "plans", "__weakref__")

    def __init__(
        self, mapping: Mapping[str, str] | None = None, *, source: str = "PythonOption"
    ) -> None:
        self._raw: dict[str, str] = {
            str(k): str(v) for k, v in (mapping or {}).items()
            if str(k).startswith(PREFIX) or str(k) in FOREIGN
        }
        self.source = source
        self._cache: dict[str, object] = {}
        self.plans: dict[Any, Any] = {}

    def __repr__(self) -> str:
        shown = {k: self._shown(k, v) for k, v in self._raw.items()}
        return f"Options({shown!r})"

    @staticmethod
    def _shown(key: str, value: str) -> str:
        # A DSN can carry a password: never echo it back.
        if key.endswith(".dsn") or "password" in key:
            return redact_dsn(value) or ""
        return value

    def raw(self, name: str) -> str | None:
        """Return the unconverted value of ``name``, or None when it is not set."""
        key = name if name.startswith(PREFIX) or name in FOREIGN else PREFIX + name
        return self._raw.get(key)

    def names(self, prefix: str = "") -> Iterable[str]:
        """Yield the option names (without ``modpy_safe.``) that start with ``prefix``."""
        start = PREFIX + prefix
        for key in self._raw:
            if key.startswith(start):
                yield key[len(PREFIX):]

    def unknown(self) -> list[str]:
        """Return the full names of the options set here that modpy_safe does not declare."""
        return sorted(key for key in self._raw
                      if key not in FOREIGN and find_option(key) is None)

    def is_set(self, option: Option[Any], param: str | None = None) -> bool:
        """Return True when ``option`` is given in this configuration."""
        return option.key(param) in self._raw

    def value(self, option: Option[T], param: str | None = None) -> T:
        """Return ``option`` converted by its cast, or its default when unset.

        ``param`` fills the ``<name>`` of a family (``db.<name>.dsn``). A value
        the cast rejects raises :class:`ConfigError` with the option's full
        name, the value as written and what is allowed.
        """
        key = option.key(param)
        try:
            return self._cache[key]  # type: ignore[return-value]
        except KeyError:
            pass
        raw = self._raw.get(key)
        if raw is None:
            value = option.default
        else:
            value = check(f"{self.source} {key}", raw, option.cast, shown=self._shown(key, raw))
        self._cache[key] = value
        return value


def check(label: str, raw: str, cast: Cast[T], *, shown: str | None = None) -> T:
    """Convert ``raw`` with ``cast``; on failure raise ConfigError naming ``label``."""
    try:
        return cast(raw)
    except ValueError as exc:
        value = raw if shown is None else shown
        raise ConfigError(f"{label} has value {value!r}: {exc}.") from None


# Options are parsed once per distinct configuration, not per request. httpd hands
# out a fresh table each time, so the cache is keyed by its contents: first by the
# items in httpd's own order (cheap, and stable for one section), then by the
# sorted modpy_safe items, so equal configurations share one Options.
_by_items: dict[tuple[tuple[str, str], ...], Options] = {}
_by_content: dict[tuple[tuple[str, str], ...], Options] = {}
_cache_lock = threading.Lock()
_CACHE_LIMIT = 256


def options_for(table: Mapping[str, str]) -> Options:
    """Return the cached :class:`Options` for an option table (``req.get_options()``)."""
    items = tuple(table.items())
    found = _by_items.get(items)
    if found is not None:
        return found
    key = tuple(sorted((k, v) for k, v in items if k.startswith(PREFIX) or k in FOREIGN))
    with _cache_lock:
        if len(_by_items) >= _CACHE_LIMIT:
            _by_items.clear()
            _by_content.clear()
        found = _by_content.get(key)
        if found is None:
            found = _by_content[key] = Options(dict(key))
        _by_items[items] = found
        return found
