"""The plugin as a user meets it: docs/testing.md's example and its promises, run in projects
of their own (``python -m pytest`` in a temporary directory, the plugin found through its
entry point)."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from modpy_safe.testing import CHECKOUT, make_tempdir

pytestmark = pytest.mark.httpd

GUIDE = CHECKOUT / "docs" / "testing.md"
_BLOCK = re.compile(r'^```\w+(?: fragment)? file="(?P<file>[^"]+)"\n(?P<text>.*?)^```$',
                    re.M | re.S)


def example_files() -> dict[str, str]:
    """Return the files of the guide's complete example: path in the project → text."""
    files = {m["file"]: m["text"] for m in _BLOCK.finditer(GUIDE.read_text(encoding="utf-8"))}
    assert set(files) == {"pyproject.toml", "handlers/notes.py", "tests/test_notes.py"}, files
    return files


@pytest.fixture
def project() -> Iterator[Path]:
    root = make_tempdir("modpy_safe-user-project-")
    yield root
    shutil.rmtree(root, ignore_errors=True)


def run_pytest(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
                          cwd=project, capture_output=True, text=True, timeout=280)


def write(project: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = project / name
        path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


@pytest.mark.timeout(300)  # a pytest run of its own: a PostgreSQL cluster and nine servers
def test_the_guides_example_passes_under_three_mpms_with_warnings_as_errors(
        project: Path) -> None:
    write(project, example_files())
    result = run_pytest(project, "-q", "-rA")
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert re.search(r"^9 passed", out, re.M), out
    for mpm in ("prefork", "worker", "event"):
        assert f"test_every_test_starts_with_an_empty_database[{mpm}]" in out, out
    assert "warning" not in out.lower(), out


PASSING_AND_FAILING = '''\
HELLO = "def handler(req):\\n    return 'hello'\\n"


def test_passes(httpd):
    server = httpd("prefork", directory="PythonHandler modpy_safe.dispatch",
                   files={"hello.py": HELLO})
    print("ROOT", server.root, flush=True)
    assert server.get("/hello.py").text == "hello"


def test_fails(httpd):
    server = httpd("prefork", directory="PythonHandler modpy_safe.dispatch",
                   files={"hello.py": "def handler(req):\\n    raise KeyError('the bug')\\n"})
    print("ROOT", server.root, flush=True)
    assert server.get("/hello.py").status == 200


def test_without_a_server():
    assert True
'''


def test_a_failed_tests_server_is_kept_and_named_a_passed_ones_removed(project: Path) -> None:
    write(project, {"pyproject.toml": example_files()["pyproject.toml"],
                    "tests/test_kept.py": PASSING_AND_FAILING})
    result = run_pytest(project, "-s")
    out = result.stdout + result.stderr
    assert result.returncode == 1 and "1 failed, 2 passed" in out, out
    passed_root, failed_root = (Path(p) for p in re.findall(r"ROOT (/\S+)", out))
    try:
        assert not passed_root.exists()
        assert failed_root.is_dir() and (failed_root / "logs" / "error.log").exists()
        report = out[out.index("modpy_safe httpd"):]
        assert f"httpd (prefork) kept in {failed_root}" in report
        assert "KeyError: 'the bug'" in report, "the report shows the error log's end"
        summary = out[out.index("modpy_safe: server directories kept"):]
        assert str(failed_root) in summary and str(passed_root) not in summary
    finally:
        shutil.rmtree(failed_root, ignore_errors=True)


def test_the_httpd_marker_is_registered_and_put_on_httpd_tests(project: Path) -> None:
    write(project, {"pyproject.toml": example_files()["pyproject.toml"],
                    "tests/test_kept.py": PASSING_AND_FAILING})
    markers = run_pytest(project, "--markers")
    assert "@pytest.mark.httpd:" in markers.stdout, markers.stdout + markers.stderr
    fast = run_pytest(project, "-q", "-m", "not httpd")
    assert fast.returncode == 0 and "1 passed, 2 deselected" in fast.stdout, fast.stdout
