"""Every test has a time limit, so a test that hangs fails alone instead of hanging the run."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

HANGS = '''
import socket


def test_waits_for_an_answer_that_never_comes():
    # What a checkout waiting forever, or a server that never answers, looks like.
    mine, theirs = socket.socketpair()
    with mine, theirs:
        mine.recv(1)
'''


def test_the_suite_has_a_default_time_limit(pytestconfig: pytest.Config) -> None:
    """pytest-timeout is loaded and pyproject.toml gives every test a limit."""
    assert pytestconfig.pluginmanager.hasplugin("timeout")
    assert float(pytestconfig.getini("timeout")) == 120


def test_a_hanging_test_fails_and_the_run_goes_on(tmp_path: Path) -> None:
    """A test blocked in a system call is failed at its limit; the next test still runs."""
    (tmp_path / "test_hang.py").write_text(HANGS + textwrap.dedent('''
        def test_after_it():
            pass
    '''))
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-o", "timeout=2", "-q",
         "test_hang.py"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert run.returncode == 1, run.stdout + run.stderr
    assert "Timeout (>2.0s)" in run.stdout, run.stdout
    assert "1 failed, 1 passed" in run.stdout, run.stdout
