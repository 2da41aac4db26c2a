"""Fixtures of the browser tests: one Chromium and one local server over the built book per test session.

Without Playwright or Debian's Chromium the tests are skipped with the reason (``make test`` runs pytest
with ``-ra``, so the summary lists every skip and why).
"""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import browserkit  # noqa: E402


@pytest.fixture(scope="session")
def chromium():
    reason = browserkit.missing()
    if reason:
        pytest.skip(f"browser tests skipped: {reason}")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = browserkit.launch(playwright)
        yield browser
        browser.close()


@pytest.fixture(scope="session")
def site(chromium, book_html):
    """The base URL of the built book, served from 127.0.0.1."""
    with browserkit.serve(book_html) as base:
        yield base


@pytest.fixture(scope="session")
def axe():
    reason = browserkit.missing_axe()
    if reason:
        pytest.skip(f"accessibility checks skipped: {reason}")
    return browserkit.AXE_JS
