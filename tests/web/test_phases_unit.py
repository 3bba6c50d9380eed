"""The phase rules in plain Python: return codes, which handlers serve a phase, refusals.

A stand-in request only: what these guard is also exercised through httpd in
tests/web/test_phases.py.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from modpy_safe import ConfigError, HTTPError
from modpy_safe._options import Options
from modpy_safe.web import phases, response

AUTHEN = phases.PHASES["authenhandler"]
ACCESS = phases.PHASES["accesshandler"]


def test_phase_names_and_continuations_are_mod_pythons() -> None:
    # mod_python's apache._status_values, phase by phase.
    assert {name: sorted(p.proceed) for name, p in phases.PHASES.items()} == {
        "postreadrequesthandler": [-1, 0], "transhandler": [-1],
        "headerparserhandler": [-1, 0], "inithandler": [-1, 0], "accesshandler": [-1, 0],
        "authenhandler": [-1], "authzhandler": [-1], "typehandler": [-1],
        "fixuphandler": [-1, 0], "handler": [0], "loghandler": [-1, 0],
        "cleanuphandler": [0]}
    assert phases.BY_DIRECTIVE["PythonAuthenHandler"] is AUTHEN
    assert [p.name for p in phases.PHASES.values() if p.refuses] == [
        "postreadrequesthandler", "transhandler", "headerparserhandler", "inithandler",
        "accesshandler", "authenhandler", "authzhandler", "typehandler", "fixuphandler"]


def test_none_is_ok_only_where_ok_lets_the_next_handler_run() -> None:
    assert phases.outcome(ACCESS, None) == phases.OK
    with pytest.raises(TypeError, match="returned None"):
        phases.outcome(AUTHEN, None)
    assert phases.outcome(AUTHEN, 401) == 401
    with pytest.raises(TypeError, match="returns apache.OK"):
        phases.outcome(AUTHEN, True)
    with pytest.raises(TypeError, match="returns apache.OK"):
        phases.outcome(ACCESS, "a page")


def _plan(tmp_path: Path, options: dict[str, str]) -> phases.PhasePlan:
    return phases.PhasePlan(Options(options), str(tmp_path), str(tmp_path))


def test_phase_option_names_handlers_else_the_handler_file(tmp_path: Path) -> None:
    plan = _plan(tmp_path, {"modpy_safe.handler": "app.py::serve",
                            "modpy_safe.authenhandler": "auth.py 'my dir/b.py::check'"})
    (only,) = plan.steps(ACCESS)
    assert (only.target.path, only.target.name) == (str(tmp_path / "app.py"), "accesshandler")
    first, second = plan.steps(AUTHEN)
    assert (first.target.name, second.target.name) == ("authenhandler", "check")
    assert second.target.path == str(tmp_path / "my dir" / "b.py")
    (content,) = plan.steps(phases.CONTENT)
    assert content.target.name == "serve"


def test_filter_named_by_its_own_option_in_any_case(tmp_path: Path) -> None:
    plan = _plan(tmp_path, {"modpy_safe.outputfilter": "all.py",
                            "modpy_safe.outputfilter.Upper": "up.py::shout"})
    (step,) = plan.steps(phases.OUTPUT, "upper")
    assert (Path(step.target.path).name, step.target.name) == ("up.py", "shout")
    (other,) = plan.steps(phases.OUTPUT, "gzip")
    assert (Path(other.target.path).name, other.target.name) == ("all.py", "outputfilter")


def test_a_phase_without_a_file_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="modpy_safe.authenhandler file.py"):
        _plan(tmp_path, {}).steps(AUTHEN)
    with pytest.raises(ConfigError, match="modpy_safe.fixuphandler"):
        _plan(tmp_path, {"modpy_safe.fixuphandler": "app.py::not-a-name"}).steps(
            phases.PHASES["fixuphandler"])


class StandIn:
    """What refuse() touches of mod_python's request."""

    def __init__(self, *, main: Any = None, auth: tuple[str, str] | None = None) -> None:
        self.main = main
        self.method, self.unparsed_uri = "GET", "/private/file.txt"
        self.headers_in: dict[str, str] = {}
        self.headers_out: dict[str, str] = {}
        self.err_headers_out: dict[str, str] = {}
        self.status = 200
        self.content_type = ""
        self.written: list[bytes] = []
        self._auth = auth

    def write(self, data: bytes, flush: int = 1) -> None:
        self.written.append(data)

    def auth_type(self) -> str | None:
        return self._auth[0] if self._auth else None

    def auth_name(self) -> str | None:
        return self._auth[1] if self._auth else None


def test_refusal_of_the_main_request_is_a_page_and_done() -> None:
    req = StandIn(auth=("Basic", 'the "shop"'))
    assert response.refuse(req, HTTPError(401, "who?"), debug=False,
                           phase="PythonAuthenHandler") == response.DONE
    assert req.status == 401 and b"who?" in b"".join(req.written)
    assert req.err_headers_out == {"WWW-Authenticate": 'Basic realm="the \\"shop\\""'}


def test_refusal_of_a_subrequest_is_only_its_status() -> None:
    req = StandIn(main=object())
    assert response.refuse(req, response.Redirect("/login"), debug=False,
                           phase="PythonAccessHandler") == 303
    assert req.headers_out == {"Location": "/login"} and not req.written
    assert response.refuse(req, RuntimeError("boom"), debug=False,
                           phase="PythonAccessHandler") == 500
