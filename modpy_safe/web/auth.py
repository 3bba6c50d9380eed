"""The publisher's ``__auth__`` / ``__access__`` / ``__auth_realm__`` protocol.

mod_python.publisher lets a page protect itself with three names, looked up on
the module, on every object met while traversing the URL, and inside a
published function or method (as nested definitions):

``__auth__``
    a dict ``{user: password}``, a callable ``(req, user, password) -> bool``,
    or a constant whose truth decides.
``__access__``
    a list, tuple or set of users, a callable ``(req, user) -> bool``, or a constant.
``__auth_realm__``
    the realm named in the ``WWW-Authenticate`` challenge (default ``unknown``).

Credentials come from a Basic ``Authorization`` header, parsed only when an
object is protected, so a Digest header sent to an unprotected page is ignored.
Missing or wrong credentials answer 401 with a Basic challenge, a malformed
Basic header 400, and refused access 403.

mod_python finds nested definitions by indexing ``co_consts`` with a formula
that no longer matches Python 3.11's bytecode (and then calls
``base64.decodestring``, gone since Python 3.9), and so reads a nested
``__auth__ = {"bob": "pw"}`` wrongly. Here the function's bytecode is read by
:mod:`.literals`, once per code object: constants, dicts, lists, tuples and sets
of constants, and nested ``def``; anything computed at run time is refused.
"""
from __future__ import annotations

import base64
import binascii
import types
import weakref
from collections.abc import Callable
from typing import Any

from .._apache import Request
from .._errors import ConfigError, HTTPError
from . import literals as _literals

__all__ = ["AuthState", "Protection", "protection_of", "nests_protection", "check"]

NAMES = ("__auth__", "__access__", "__auth_realm__")


class Protection:
    """What one object on the path declares; ``None`` fields are absent."""

    __slots__ = ("auth", "access", "realm", "has_auth", "has_access")

    def __init__(self) -> None:
        self.auth: Any = None
        self.access: Any = None
        self.realm: str | None = None
        self.has_auth = False
        self.has_access = False

    def __bool__(self) -> bool:
        return self.has_auth or self.has_access or self.realm is not None


class AuthState:
    """Realm and credentials carried from the module down the traversal path."""

    __slots__ = ("realm", "user", "password", "parsed")

    def __init__(self) -> None:
        self.realm = "unknown"
        self.user: str | None = None
        self.password: str | None = None
        self.parsed = False


# Per code object: the nested values found in it (absent names are omitted).
_nested_cache: "weakref.WeakKeyDictionary[types.CodeType, dict[str, Any]]" = (
    weakref.WeakKeyDictionary()
)


# Per function: whether its code nests any of the names (the usual answer: no).
_nested_by_func: "weakref.WeakKeyDictionary[types.FunctionType, bool]" = (
    weakref.WeakKeyDictionary()
)


def nests_protection(func: types.FunctionType) -> bool:
    """Return True when ``func``'s own code assigns ``__auth__``, ``__access__`` or a realm."""
    nested = _nested_by_func.get(func)
    if nested is None:
        nested = _nested_by_func[func] = bool(_nested_values(func.__code__))
    return nested


def _nested_values(code: types.CodeType) -> dict[str, Any]:
    """Return the constants / code objects the function assigns to the three names."""
    found = _nested_cache.get(code)
    if found is not None:
        return found
    found = {}
    if any(name in code.co_varnames or name in code.co_names or name in code.co_cellvars
           for name in NAMES):
        found = _literals.assigned(code, NAMES)
    _nested_cache[code] = found
    return found


def _from_code(func: types.FunctionType) -> Protection | None:
    values = _nested_values(func.__code__)
    if not values:
        return None
    prot = Protection()
    for name, value in values.items():
        # A page that cannot be checked is refused: the message is the
        # operator's (the error log), the client gets a 500 and a reference.
        if value is _literals.UNREADABLE:
            raise ConfigError(
                f"{func.__qualname__!r} in {func.__code__.co_filename!r} assigns {name} a "
                "value computed at run time; a nested one must be a nested function or a "
                "constant (a dict, list or tuple of constants too): move it to module level "
                "or to a nested def")
        if isinstance(value, types.CodeType):
            if value.co_freevars:
                raise ConfigError(
                    f"nested {name} in {func.__qualname__!r} uses variables of the enclosing "
                    "function; it must use only its arguments and globals")
            value = types.FunctionType(value, func.__globals__, name)
        _assign(prot, name, value)
    return prot


def _assign(prot: Protection, name: str, value: Any) -> None:
    if name == "__auth__":
        prot.auth, prot.has_auth = value, True
    elif name == "__access__":
        prot.access, prot.has_access = value, True
    else:
        prot.realm = str(value)


def protection_of(obj: Any) -> Protection | None:
    """Return what ``obj`` declares about auth, or None when it declares nothing.

    A function or method is read twice: its nested definitions (mod_python's
    rule) and its attributes (``func.__auth__ = ...``, which mod_python ignores
    for functions; honouring it can only protect more).
    """
    kind = type(obj)
    # The common cases first, by plain dict lookups: this runs for every
    # object on every request's path.
    if kind is types.ModuleType:
        attrs = obj.__dict__
        if "__auth__" not in attrs and "__access__" not in attrs and "__auth_realm__" not in attrs:
            return None
        return _from_lookup(None, lambda name: attrs.get(name, _MISSING))
    func = obj.__func__ if kind is types.MethodType else obj
    if type(func) is types.FunctionType:
        prot = _from_code(func) if nests_protection(func) else None
        fattrs = func.__dict__
        if not fattrs:
            return prot
        return _from_lookup(prot, lambda name: fattrs.get(name, _MISSING))
    return _from_lookup(None, lambda name: getattr(obj, name, _MISSING))


def _from_lookup(prot: Protection | None, lookup: Callable[[str], Any]) -> Protection | None:
    for name in NAMES:
        value = lookup(name)
        if value is not _MISSING and (value is not None or name != "__auth_realm__"):
            if prot is None:
                prot = Protection()
            _assign(prot, name, value)
    return prot if prot else None


_MISSING: Any = object()


def parse_basic(header: str) -> tuple[str, str] | None:
    """Return ``(user, password)`` from a Basic Authorization header.

    None when the header uses another scheme (Digest, Bearer): the caller then
    treats the request as carrying no credentials. A Basic header that does not
    decode to ``user:password`` raises HTTPError(400).
    """
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        raw = base64.b64decode(token.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise HTTPError(400, "the Basic Authorization header is not valid base64") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        # Browsers long sent ISO-8859-1 credentials; mod_python accepted them too.
        text = raw.decode("latin-1")
    user, colon, password = text.partition(":")
    if not colon:
        raise HTTPError(400, "the Basic Authorization header has no 'user:password'")
    return user, password


def _challenge(realm: str) -> dict[str, str]:
    quoted = realm.replace("\\", "\\\\").replace('"', '\\"')
    return {"WWW-Authenticate": f'Basic realm="{quoted}"'}


def check(req: Request, obj: Any, state: AuthState | None) -> AuthState | None:
    """Apply what ``obj`` declares to the request; raise HTTPError 400/401/403 to refuse.

    ``state`` carries the realm and credentials down the path; it is created
    the first time something is protected, and returned for the next object.
    """
    prot = protection_of(obj)
    if prot is None:
        return state
    if state is None:
        state = AuthState()
    if prot.realm is not None:
        state.realm = prot.realm
    if not (prot.has_auth or prot.has_access):
        return state
    if not state.parsed:
        state.parsed = True
        header = req.headers_in.get("Authorization")
        if header:
            creds = parse_basic(header)
            if creds is not None:
                state.user, state.password = creds
    if prot.has_auth:
        if not state.user:
            raise HTTPError(401, "authentication required", headers=_challenge(state.realm))
        auth = prot.auth
        if callable(auth):
            ok = auth(req, state.user, state.password)
        elif isinstance(auth, dict):
            ok = state.user in auth and auth[state.user] == state.password
        else:
            ok = auth
        if not ok:
            raise HTTPError(401, "wrong user name or password", headers=_challenge(state.realm))
        # Apache's access log (%u) and the page see who logged in.
        req.user = state.user
    if prot.has_access:
        access = prot.access
        if callable(access):
            ok = access(req, state.user)
        elif isinstance(access, (list, tuple, set, frozenset)):
            # A set too: mod_python would take one as a true constant and let anyone in.
            ok = state.user in access
        else:
            ok = access
        if not ok:
            raise HTTPError(403, "access refused")
    return state
