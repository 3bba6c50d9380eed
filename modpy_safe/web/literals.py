"""Read what a function assigns to some local names, from its bytecode, without running it.

mod_python.publisher lets a published function protect itself with nested
``__auth__ = {...}`` / ``__access__ = [...]`` / ``def __auth__(...)``. Those values
exist only while the function runs, so they are read from its code: each
assignment's value is rebuilt from the instructions that compute it, as long as
they only load constants and build tuples, lists, sets and dicts of them (what
``ast.literal_eval`` accepts). A nested ``def`` yields its code object. Anything
computed at run time yields :data:`UNREADABLE`. Nothing is executed.
"""
from __future__ import annotations

import dis
import types
from typing import Any

__all__ = ["assigned", "UNREADABLE"]


class _Unreadable:
    """The value of an assignment that is computed at run time."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "UNREADABLE"


UNREADABLE: Any = _Unreadable()

_STORES = frozenset({"STORE_FAST", "STORE_NAME", "STORE_GLOBAL", "STORE_DEREF"})
_SKIP = frozenset({"CACHE", "EXTENDED_ARG", "NOP", "RESUME", "PRECALL"})
_BUILD = {"BUILD_TUPLE": tuple, "BUILD_LIST": list, "BUILD_SET": set}
_EXTEND = {"LIST_EXTEND": list, "SET_UPDATE": set, "DICT_UPDATE": dict, "DICT_MERGE": dict}


class _Code:
    """A function made from a nested code object (``def`` in the function's body)."""

    __slots__ = ("code",)

    def __init__(self, code: types.CodeType) -> None:
        self.code = code


def assigned(code: types.CodeType, names: tuple[str, ...]) -> dict[str, Any]:
    """Return, for each of ``names`` the code assigns, the value its first assignment stores.

    The value is a constant (tuples, lists, sets and dicts of constants
    included), a code object for a nested ``def``, or :data:`UNREADABLE`.
    """
    found: dict[str, Any] = {}
    stack: list[Any] = []
    for ins in dis.get_instructions(code):
        op = ins.opname
        if op in _SKIP:
            continue
        if op in _STORES:
            value = stack.pop() if stack else UNREADABLE
            if ins.argval in names and ins.argval not in found:
                found[ins.argval] = value.code if isinstance(value, _Code) else value
            continue
        _step(stack, op, ins.arg or 0, ins.argval)
    return found


def _step(stack: list[Any], op: str, arg: int, argval: Any) -> None:
    """Apply one instruction to the simulated stack; anything unknown leaves UNREADABLE."""
    if op == "LOAD_CONST":
        stack.append(_Code(argval) if isinstance(argval, types.CodeType) else argval)
    elif op in _BUILD:
        items = _pop(stack, arg)
        stack.append(UNREADABLE if items is None else _BUILD[op](items))
    elif op == "BUILD_MAP":
        items = _pop(stack, 2 * arg)
        stack.append(UNREADABLE if items is None
                     else dict(zip(items[::2], items[1::2], strict=True)))
    elif op == "BUILD_CONST_KEY_MAP":
        keys = _pop(stack, 1)
        values = _pop(stack, arg)
        if (keys is None or values is None or not isinstance(keys[0], tuple)
                or len(keys[0]) != len(values)):
            stack.append(UNREADABLE)
        else:
            stack.append(dict(zip(keys[0], values, strict=True)))
    elif op in _EXTEND and arg == 1:
        items = _pop(stack, 2)
        kind: type[Any] = _EXTEND[op]
        if items is None or type(items[0]) is not kind:
            stack.append(UNREADABLE)
        elif kind is list:
            items[0].extend(items[1])
            stack.append(items[0])
        else:
            items[0].update(items[1])
            stack.append(items[0])
    elif op == "LIST_TO_TUPLE":
        items = _pop(stack, 1)
        stack.append(tuple(items[0]) if items is not None else UNREADABLE)
    elif op == "MAKE_FUNCTION":
        # The code object on top; defaults, annotations, a closure below it per flag.
        code = _pop(stack, 1, code=True)
        _pop(stack, bin(arg & 0x0F).count("1"), code=True)
        stack.append(code[0] if code is not None else UNREADABLE)
    elif op == "SET_FUNCTION_ATTRIBUTE":  # Python 3.13: the function on top, a value below
        func = _pop(stack, 2, code=True)
        stack.append(func[1] if func is not None else UNREADABLE)
    elif op in ("COPY", "DUP_TOP"):
        depth = arg if op == "COPY" else 1
        stack.append(stack[-depth] if len(stack) >= depth else UNREADABLE)
    elif op == "POP_TOP":
        _pop(stack, 1)
    else:
        # Any other instruction computes at run time: what it leaves is unknown.
        stack[:] = [UNREADABLE]


def _pop(stack: list[Any], count: int, *, code: bool = False) -> list[Any] | None:
    """Pop ``count`` items (deepest first); None when too few, or one is unknown.

    A function (``_Code``) counts as unknown inside a container (``code=False``).
    """
    if count == 0:
        return []
    if len(stack) < count:
        stack.clear()
        return None
    items = stack[-count:]
    del stack[-count:]
    if any(item is UNREADABLE or (not code and isinstance(item, _Code)) for item in items):
        return None
    return items
