"""Headless Chromium reads the status page at 1280 px: nothing runs off the right edge.

The server has what makes the page wide: long paths, a file that fails to load
with a long message, a Database that is down and one with long settings, two
children. The test takes a screenshot of the whole page (kept in the
directory named by ``MODPY_SAFE_SCREENSHOTS`` when set, to look at) and
checks the document is no wider than the window.
"""
from __future__ import annotations

import concurrent.futures
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from modpy_safe.testing import Httpd, PostgresServer, make_tempdir, running

pytestmark = [pytest.mark.httpd, pytest.mark.browser]

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--disable-background-networking", "--disable-component-update", "--no-first-run",
         "--hide-scrollbars")
WIDTH = 1280
DEEP = "a-rather-long-directory-name/with/several/levels/of/nesting/for/the/handlers"

WORKING = '''\
import os, time
import modpy_safe

db = modpy_safe.Database({dsn!r}, name="orders_primary_database", pool_min=0,
                         max_lifetime=7200, max_idle=900)

def handler(req):
    here = os.path.join(os.path.dirname(__file__), "joined")
    open(os.path.join(here, str(os.getpid())), "w").close()
    for _ in range(400):
        if len(os.listdir(here)) >= 2:
            break
        time.sleep(0.005)
    with db.transaction() as cur:
        cur.execute("SELECT 1")
    return "ok"
'''
DOWN = '''\
import modpy_safe

db = modpy_safe.Database("postgresql://app:secret@127.0.0.1:1/app?connect_timeout=1",
                         name="reporting_replica_that_is_down")

def handler(req):
    with db.connection():
        return "never"
'''
BROKEN = ("import this_module_does_not_exist_and_has_a_very_long_name_to_make_the_error_"
          "message_as_wide_as_it_can_possibly_get\n")


@pytest.fixture(scope="module")
def server(request: pytest.FixtureRequest, postgres: PostgresServer) -> Iterator[Httpd]:
    root = make_tempdir("modpy_safe-status-browser-")
    srv = Httpd(root, mpm="prefork", processes=2,
                directory="SetHandler mod_python\nPythonHandler modpy_safe.dispatch",
                files={f"{DEEP}/working_handler_with_a_long_name.py":
                       WORKING.format(dsn=postgres.dsn_for("status_browser")),
                       f"{DEEP}/down.py": DOWN, f"{DEEP}/broken_import.py": BROKEN},
                extra=("<If \"%{REQUEST_URI} == '/status'\">\n    SetHandler mod_python\n"
                       "    PythonHandler modpy_safe.status\n</If>\n"))
    joined = srv.path(f"{DEEP}/joined")
    joined.mkdir()
    os.chmod(joined, 0o777)
    with running(srv, request):
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            list(pool.map(lambda _: srv.get(f"/{DEEP}/working_handler_with_a_long_name.py"),
                          range(2)))
        assert srv.get(f"/{DEEP}/down.py").status == 503
        assert srv.get(f"/{DEEP}/broken_import.py").status == 500
        yield srv


@pytest.fixture
def browser() -> Iterator[Any]:
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        how = "apt-get install chromium chromium-driver (make test does it as root)"
        if os.geteuid() == 0:
            pytest.fail(f"{', '.join(missing)} missing although this run could install them")
        pytest.skip(f"no browser: {', '.join(missing)} missing; {how}")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="modpy_safe-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*FLAGS, f"--user-data-dir={profile}", f"--window-size={WIDTH},900"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options,
                              service=Service(executable_path=str(CHROMEDRIVER)))
    try:
        driver.set_page_load_timeout(30)
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def test_the_page_fits_1280_pixels(server: Httpd, browser: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    server.wait_for("/status?format=json", lambda r: r.json()["summary"]["children"] == 2)
    browser.get(server.url("/status"))
    width = browser.execute_script("return document.documentElement.clientWidth")
    assert width == WIDTH
    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(WIDTH, min(height + 100, 6000))
    shots = Path(os.environ.get("MODPY_SAFE_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    assert browser.save_screenshot(str(shots / "status-1280.png"))

    scroll = browser.execute_script("return document.documentElement.scrollWidth")
    assert scroll <= width, f"the page is {scroll} px wide in a {width} px window"
    problems = browser.find_element(By.CSS_SELECTOR, "ul.problems").text
    assert "broken_import.py fails to load" in problems
    assert "reporting_replica_that_is_down is down" in problems
    assert "secret" not in browser.page_source
