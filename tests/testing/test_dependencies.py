"""How httpd's Python finds modpy_safe's PyPI dependencies (multipart): the venv's
site-packages when httpd's User can read it, else a copy in the server's directory."""
from __future__ import annotations

import importlib
import importlib.util
import shutil
import subprocess
from pathlib import Path

import pytest

from modpy_safe.testing.base import make_tempdir, service_user

# The module, not the fixture of the same name that modpy_safe.testing exports.
harness = importlib.import_module("modpy_safe.testing.httpd")


def imports_as_www_data(path: str) -> bool:
    www = service_user("www-data")
    kwargs = {"user": www.pw_uid, "group": www.pw_gid, "extra_groups": []} if www else {}
    code = f"import sys; sys.path.append({path!r}); import multipart; print(multipart.__file__)"
    result = subprocess.run(["/usr/bin/python3", "-I", "-c", code], capture_output=True,
                            text=True, cwd="/", env={"PATH": "/usr/bin:/bin"}, **kwargs)
    return result.returncode == 0 and result.stdout.startswith(path)


def test_the_venvs_site_packages_is_named_when_readable(tmp_path: Path) -> None:
    www = service_user("www-data")
    if harness._system_imports(www, "multipart"):
        pytest.skip("the system Python has multipart itself")
    origin = importlib.util.find_spec("multipart").origin
    site = Path(origin).parent
    if www is not None and not harness._user_can_read(www, site):
        pytest.skip(f"www-data cannot read {site} (a checkout under /root, say): the copy "
                    "is what test_an_unreadable_one_is_copied_where_httpd_can_import_it checks")
    assert harness.dependency_paths(tmp_path) == [str(site)]
    assert imports_as_www_data(str(Path(origin).parent))


def test_an_unreadable_one_is_copied_where_httpd_can_import_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    www = service_user("www-data")
    if www is None:
        pytest.skip("not root: httpd runs as this user, who reads what it installed")
    monkeypatch.setattr(harness, "_system_imports", lambda user, name: False)
    monkeypatch.setattr(harness, "_user_can_read", lambda user, path: False)
    root = make_tempdir("modpy_safe-deps-")  # a server's directory, as the harness makes it
    try:
        assert harness._dependency_paths(root, www) == [str(root / "deps")]
        assert (root / "deps" / "multipart.py").is_file()
        assert imports_as_www_data(str(root / "deps"))
    finally:
        shutil.rmtree(root, ignore_errors=True)
