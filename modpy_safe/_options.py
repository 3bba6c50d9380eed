"""One typed reader for configuration: PythonOption values in httpd, a dict in tests.

Every option of modpy_safe is named ``modpy_safe.<area>.<setting>`` and read
through :class:`Options`, which casts it, applies the default and, for a bad
value, raises :class:`~modpy_safe.ConfigError` naming the option, the value and
what is allowed.
"""
from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from typing import Callable, TypeVar

from ._errors import ConfigError
from ._redact import redact_dsn

__all__ = ["Options", "options_for", "PREFIX", "as_bool", "as_seconds", "as_int", "as_choice"]

PREFIX = "modpy_safe."

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


class Options:
    """Typed, validated access to ``modpy_safe.*`` options.

    ``mapping`` is what ``req.get_options()`` returns inside httpd, or a plain
    dict in tests. ``source`` names where the values came from in messages.
    """

    __slots__ = ("_raw", "source", "_cache", "__weakref__")

    def __init__(
        self, mapping: Mapping[str, str] | None = None, *, source: str = "PythonOption"
    ) -> None:
        self._raw: dict[str, str] = {
            str(k): str(v) for k, v in (mapping or {}).items() if str(k).startswith(PREFIX)
        }
        self.source = source
        self._cache: dict[str, object] = {}

    def __contains__(self, name: str) -> bool:
        return self._key(name) in self._raw

    def __repr__(self) -> str:
        shown = {k: self._shown(k, v) for k, v in self._raw.items()}
        return f"Options({shown!r})"

    @staticmethod
    def _key(name: str) -> str:
        return name if name.startswith(PREFIX) else PREFIX + name

    @staticmethod
    def _shown(key: str, value: str) -> str:
        # A DSN can carry a password: never echo it back.
        if key.endswith(".dsn") or "password" in key:
            return redact_dsn(value) or ""
        return value

    def raw(self, name: str) -> str | None:
        """Return the unconverted value of ``name``, or None when it is not set."""
        return self._raw.get(self._key(name))

    def names(self, prefix: str = "") -> Iterable[str]:
        """Yield the option names (without ``modpy_safe.``) that start with ``prefix``."""
        start = self._key(prefix)
        for key in self._raw:
            if key.startswith(start):
                yield key[len(PREFIX):]

    def get(self, name: str, cast: Cast[T], default: T) -> T:
        """Return option ``name`` converted by ``cast``, or ``default`` when unset.

        A value that ``cast`` rejects raises :class:`ConfigError` with the
        option's full name, the value as written and what is allowed.
        """
        key = self._key(name)
        if key in self._cache:
            return self._cache[key]  # type: ignore[return-value]
        raw = self._raw.get(key)
        if raw is None:
            value = default
        else:
            value = check(f"{self.source} {key}", raw, cast, shown=self._shown(key, raw))
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
    key = tuple(sorted((k, v) for k, v in items if k.startswith(PREFIX)))
    with _cache_lock:
        if len(_by_items) >= _CACHE_LIMIT:
            _by_items.clear()
            _by_content.clear()
        found = _by_content.get(key)
        if found is None:
            found = _by_content[key] = Options(dict(key))
        _by_items[items] = found
        return found
