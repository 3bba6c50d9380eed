"""A dict ``__auth__`` lets a user in only with that user's own password, through httpd.

``__auth__ = {user: password}`` may stand at module level, on a class (so on
every object reached through it) or as a function attribute; each is checked
with Basic credentials. A known user with a wrong password, an empty one,
another user's, or one that only shares a prefix with the right one, is 401
with the challenge, exactly like an unknown user.
"""
from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import pytest

from modpy_safe.testing import Httpd, make_tempdir, running

pytestmark = pytest.mark.httpd

MODULE_PY = '''
__auth__ = {"spam": "eggs", "ham": "jam"}
__auth_realm__ = "Module"

def index(req):
    return "module for " + req.user
'''

OBJECTS_PY = '''
__auth_realm__ = "Objects"

class Club:
    __auth__ = {"spam": "eggs", "ham": "jam"}

    def room(self, req):
        return "room for " + req.user

club = Club()

def attribute(req):
    return "attribute for " + req.user

attribute.__auth__ = {"spam": "eggs", "ham": "jam"}
'''

PROTECTED = [("/module.py", "module for", "Module"),
             ("/objects.py/club/room", "room for", "Objects"),
             ("/objects.py/attribute", "attribute for", "Objects")]

WRONG = [
    ("spam", "bacon"),  # a known user, a wrong password
    ("spam", ""),  # a known user, no password
    ("spam", "jam"),  # a known user, another user's password
    ("spam", "egg"),  # a prefix of the right one
    ("spam", "eggs "),  # the right one and more
    ("spam", "EGGS"),
    ("Spam", "eggs"),  # user names are compared exactly
    ("nobody", "eggs"),  # an unknown user with a known password
]


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


@pytest.fixture(scope="module")
def site(request: Any) -> Iterator[Httpd]:
    """One httpd serving the protected pages with modpy_safe.publisher."""
    server = Httpd(make_tempdir("modpy_safe-dictauth-"),
                   files={"module.py": MODULE_PY, "objects.py": OBJECTS_PY},
                   directory="SetHandler mod_python\nPythonHandler modpy_safe.publisher")
    with running(server, request):
        yield server


@pytest.mark.parametrize(("path", "greeting", "realm"), PROTECTED)
def test_each_user_gets_in_with_their_own_password(site: Httpd, path: str, greeting: str,
                                                   realm: str) -> None:
    """The right user and password: 200, and the page sees who logged in."""
    for user, password in (("spam", "eggs"), ("ham", "jam")):
        answer = site.get(path, headers=basic(user, password))
        assert (answer.status, answer.text) == (200, f"{greeting} {user}"), answer.text[:300]


@pytest.mark.parametrize(("path", "greeting", "realm"), PROTECTED)
@pytest.mark.parametrize(("user", "password"), WRONG)
def test_a_wrong_password_is_refused_like_an_unknown_user(
        site: Httpd, path: str, greeting: str, realm: str, user: str, password: str) -> None:
    """A known user with a wrong password: 401 with the Basic challenge, the page not run."""
    answer = site.get(path, headers=basic(user, password))
    assert answer.status == 401, (answer.status, answer.text[:300])
    assert answer.header("www-authenticate") == f'Basic realm="{realm}"'
    assert greeting not in answer.text
