"""The mod_python adapter explains itself outside httpd instead of failing deep in a stack."""
from __future__ import annotations

import pytest

from modpy_safe import NotInHttpdError, _apache


def test_outside_httpd_the_adapter_says_what_to_do():
    assert _apache.in_httpd() is False
    with pytest.raises(NotInHttpdError, match="PythonHandler"):
        _apache.server_facts()


def test_error_types_show_their_public_name():
    assert NotInHttpdError.__module__ == "modpy_safe"
    assert NotInHttpdError.__name__ in repr(NotInHttpdError("x"))
