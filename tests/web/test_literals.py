"""Reading nested __auth__ / __access__ values from bytecode, without running anything."""
# ruff: noqa: F841 - the functions below assign what they never use: that is the point
from __future__ import annotations

import types

from modpy_safe.web.literals import UNREADABLE, assigned

NAMES = ("__auth__", "__access__", "__auth_realm__")


def literal_dicts_and_lists(req):  # type: ignore[no-untyped-def]
    __auth__ = {"bob": "pw", "al": "x"}
    __access__ = ["bob", "al", "c"]
    __auth_realm__ = "shop"
    return req


def one_item_each(req):  # type: ignore[no-untyped-def]
    __auth__ = {"bob": "pw"}
    __access__ = ["bob"]
    return req


def nested_and_merged(req):  # type: ignore[no-untyped-def]
    __access__ = {"a", "b"}
    __auth__ = {"bob": ("x", 1), "n": None, **{"z": -1}}
    return req


def computed(req):  # type: ignore[no-untyped-def]
    users = {"bob": "pw"}
    __auth__ = dict(users)
    __access__ = [req.user]
    return req


def functions(req):  # type: ignore[no-untyped-def]
    def __auth__(req, user, password):  # type: ignore[no-untyped-def]
        return user == "bob"

    __access__ = lambda req, user: True  # noqa: E731 - the publisher's own idiom
    __auth_realm__ = ("a", "b")
    return req


def test_literal_containers_of_constants_are_read() -> None:
    assert assigned(literal_dicts_and_lists.__code__, NAMES) == {
        "__auth__": {"bob": "pw", "al": "x"}, "__access__": ["bob", "al", "c"],
        "__auth_realm__": "shop"}
    assert assigned(one_item_each.__code__, NAMES) == {
        "__auth__": {"bob": "pw"}, "__access__": ["bob"]}
    assert assigned(nested_and_merged.__code__, NAMES) == {
        "__access__": {"a", "b"}, "__auth__": {"bob": ("x", 1), "n": None, "z": -1}}


def test_run_time_values_are_unreadable() -> None:
    assert assigned(computed.__code__, NAMES) == {
        "__auth__": UNREADABLE, "__access__": UNREADABLE}


def test_nested_functions_give_their_code() -> None:
    found = assigned(functions.__code__, NAMES)
    assert isinstance(found["__auth__"], types.CodeType)
    assert isinstance(found["__access__"], types.CodeType)
    assert found["__auth_realm__"] == ("a", "b")
