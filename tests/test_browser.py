"""A real browser uses the notes board: headless Chromium fills the form, submits, sees the note.

Uses Debian's ``chromium`` and ``chromium-driver`` (``make test`` installs them
as root) through Selenium. Skipped only where they are missing and cannot be
installed (not root); as root a missing browser is a failure, because
``make test`` should have installed it.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fix_notes import NotesSite, notes_site

from modpy_safe.testing import PostgresServer

pytestmark = [pytest.mark.httpd, pytest.mark.browser]

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--no-first-run",
)


def _require_browser() -> None:
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if not missing:
        return
    how = "apt-get install chromium chromium-driver (make test does it as root)"
    if os.geteuid() == 0:
        pytest.fail(f"{', '.join(missing)} missing although this run could install them: {how}")
    pytest.skip(f"no browser: {', '.join(missing)} missing and not root to install; {how}")


@pytest.fixture(scope="module")
def site(request: Any, postgres: PostgresServer) -> Iterator[NotesSite]:
    # One MPM is enough here: the page is the same under all three (test_app.py).
    with notes_site(postgres, "event", request) as running:
        yield running


@pytest.fixture
def browser() -> Iterator[Any]:
    _require_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="modpy_safe-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    service = Service(executable_path=str(CHROMEDRIVER))
    driver = webdriver.Chrome(options=options, service=service)
    try:
        driver.set_page_load_timeout(30)
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def test_fill_the_form_submit_and_see_the_note(site: NotesSite, browser: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    text = "Vom Browser: Grüße, 日本語 & <i>not markup</i> ✓"
    browser.get(site.httpd.url("/"))
    assert browser.find_element(By.ID, "title").text == "Notes"

    browser.find_element(By.ID, "text").send_keys(text)
    browser.find_element(By.ID, "submit").click()
    # Post/redirect/get: the browser ends up on the list again, with the note on it.
    WebDriverWait(browser, 20).until(ec.presence_of_element_located((By.CSS_SELECTOR, "#notes li")))
    assert browser.current_url == site.httpd.url("/")
    shown = [el.text for el in browser.find_elements(By.CSS_SELECTOR, "#notes .text")]
    assert text in shown
    assert not browser.find_elements(By.CSS_SELECTOR, "#notes i")  # escaped, not rendered
    stored = site.query("SELECT body FROM notes")
    assert (text,) in stored

    # An empty note is refused with the reason shown next to the form.
    browser.find_element(By.ID, "text").clear()
    browser.find_element(By.ID, "submit").click()
    error = WebDriverWait(browser, 20).until(ec.presence_of_element_located((By.ID, "error")))
    assert "empty" in error.text

    # The note's own Delete button removes it.
    browser.get(site.httpd.url("/"))
    browser.find_element(By.CSS_SELECTOR, "#notes li .delete button").click()
    WebDriverWait(browser, 20).until(ec.presence_of_element_located((By.ID, "empty")))
    assert site.query("SELECT count(*) FROM notes") == [(0,)]
