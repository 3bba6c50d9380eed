"""``modpy-safe check CONFIG`` finds what ``apache2 -t`` calls "Syntax OK".

A configuration split over included files (a glob relative to ServerRoot, a
directory, an optional include that matches nothing) carries bad values,
an unknown option, a missing handler file and a server-level option inside a
section. The command prints each as ``file:line: message`` with the same
message the server would give, and exits 1; the fixed configuration exits 0.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from modpy_safe.ops.check import check_config, main
from modpy_safe.testing import APACHE2

MAIN = """\
ServerRoot "{root}"
LoadModule mpm_prefork_module /usr/lib/apache2/modules/mod_mpm_prefork.so
LoadModule python_module /usr/lib/apache2/modules/mod_python.so
Listen 127.0.0.1:1
ServerName localhost
ErrorLog "{root}/error.log"
PidFile "{root}/httpd.pid"
PythonPath "['{root}/lib'] + sys.path"
PythonOption modpy_safe.reload.interval {interval}
IncludeOptional conf.d/*.conf
IncludeOptional nothing-here/*.conf
Include sites
"""
SITE = """\
<Directory "{root}/www">
    SetHandler mod_python
    PythonHandler modpy_safe.dispatch
    PythonOption modpy_safe.handler {handler}
    PythonOption modpy_safe.db.main.dsn "postgresql://app:{secret}@db.example/app"
    PythonOption modpy_safe.db.main.pool_max {pool_max}
</Directory>
"""
STATUS = """\
<If "%{{REQUEST_URI}} == '/status'">
    SetHandler mod_python
    PythonHandler modpy_safe.status
    PythonOption modpy_safe.status.allow "{allow}"
    {extra}
</If>
"""
SECRET = "s3cret-for-the-check"


def write(root: Path, *, bad: bool) -> Path:
    (root / "conf.d").mkdir(parents=True, exist_ok=True)
    (root / "sites").mkdir(exist_ok=True)
    (root / "www").mkdir(exist_ok=True)
    (root / "lib").mkdir(exist_ok=True)
    (root / "www" / "app.py").write_text("def handler(req):\n    return 'ok'\n")
    main_conf = root / "httpd.conf"
    main_conf.write_text(MAIN.format(root=root, interval="soon" if bad else "2"))
    (root / "sites" / "app.conf").write_text(SITE.format(
        root=root, handler="missing.py" if bad else "app.py::handler", secret=SECRET,
        pool_max="0" if bad else "4"))
    (root / "conf.d" / "status.conf").write_text(STATUS.format(
        allow="127.0.0.1 localhost" if bad else "127.0.0.1 ::1",
        extra=("PythonOption modpy_safe.relaod.interval 1\n"
               "    PythonOption modpy_safe.status.directory /run/x") if bad else ""))
    return main_conf


def test_every_problem_with_file_and_line(tmp_path: Path) -> None:
    conf = write(tmp_path, bad=True)
    problems = [str(p) for p in check_config(str(conf))]
    site, status = tmp_path / "sites" / "app.conf", tmp_path / "conf.d" / "status.conf"
    assert problems == [
        f"{conf}:9: PythonOption modpy_safe.reload.interval has value 'soon': allowed: a "
        f"number of seconds of at least 0.",
        f"{status}:4: PythonOption modpy_safe.status.allow has value '127.0.0.1 localhost': "
        f"allowed: IP addresses or networks such as 127.0.0.1, 10.0.0.0/8 or ::1, separated "
        f"by spaces; 'localhost' is neither.",
        f"{status}:5: PythonOption modpy_safe.relaod.interval is not an option of modpy_safe; "
        f"did you mean modpy_safe.reload.interval?",
        f"{status}:6: PythonOption modpy_safe.status.directory is read at server level only: "
        f"move it out of <If>",
        f"{site}:4: PythonOption modpy_safe.handler names a handler file that does not exist: "
        f"missing.py not found in {tmp_path}/www, {tmp_path}/lib",
        f"{site}:6: PythonOption modpy_safe.db.main.pool_max has value '0': allowed: a whole "
        f"number of at least 1 and at most 10000.",
    ]


def test_the_command_exits_1_on_problems_and_0_when_fixed(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]
                                                          ) -> None:
    conf = write(tmp_path, bad=True)
    assert main(["check", str(conf)]) == 1
    out, err = capsys.readouterr()
    assert f"{conf}:9: PythonOption modpy_safe.reload.interval" in out
    assert "6 problem(s)" in err
    assert SECRET not in out + err
    write(tmp_path, bad=False)
    assert main(["check", str(conf)]) == 0
    assert "no problems" in capsys.readouterr().out


def test_a_missing_include_is_a_problem(tmp_path: Path) -> None:
    conf = tmp_path / "httpd.conf"
    conf.write_text("Include conf.d/*.conf\nInclude other.conf\n<Directory /x>\n")
    problems = [str(p) for p in check_config(str(conf))]
    assert problems == [
        f"{conf}:1: Include conf.d/*.conf: no file matches {tmp_path}/conf.d/*.conf "
        f"(IncludeOptional allows that)",
        f"{conf}:2: Include other.conf: {tmp_path}/other.conf does not exist",
        f"{conf}:3: <Directory> is never closed",
    ]


def test_console_script_and_module_agree_with_apache_syntax_ok(tmp_path: Path) -> None:
    conf = write(tmp_path, bad=True)
    if os.path.exists(APACHE2):
        syntax = subprocess.run([APACHE2, "-t", "-f", str(conf)], capture_output=True,
                                text=True)
        assert "Syntax OK" in syntax.stdout + syntax.stderr
    script = Path(sys.executable).with_name("modpy-safe")
    commands = [[sys.executable, "-m", "modpy_safe", "check", str(conf)]]
    if script.exists():  # installed by 'pip install -e .' (tools/bootstrap.sh)
        commands.append([str(script), "check", str(conf)])
    for command in commands:
        done = subprocess.run(command, capture_output=True, text=True)
        assert done.returncode == 1, done
        assert len(done.stdout.splitlines()) == 6, done.stdout
