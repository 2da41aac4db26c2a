"""Fixtures shared by the test modules.

Layout (one test module per module of the code it tests):

* ``tests/unit/test_<module>.py``   labsupport's modules (``labsupport/<module>.py``, ``labsupport/models/<m>.py``)
* ``tests/checks/``                 the self-checks, their mistake tables and the mutant catalogues of every lab
* ``tests/instructor/``             the instructor tooling (grading, sandbox, attack suite, bench)
* ``tests/book/``                   the book build and the numbers it prints
* ``tests/browser/``                the built site and JupyterLab in a real browser (Playwright + Chromium)

Tests run with ``--import-mode=importlib`` (basenames may repeat across folders); this folder is on
``sys.path`` so that helper modules import by name.
"""
import os
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def one_torch_thread():
    """Tiny models: one thread is as fast, and a loaded machine does not slow the tests down many times.

    Use it for a whole module with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


class BookBuild(NamedTuple):
    returncode: int
    log: str
    html: Path


@pytest.fixture(scope="session")
def book_build() -> BookBuild:
    """The strict book build, once per test session (tests/book and tests/browser share it): into _build/html.

    ``BOOK_HTML=/path/to/_build/html`` reuses a book built before (log empty) instead of building."""
    if os.environ.get("BOOK_HTML"):
        return BookBuild(0, "", Path(os.environ["BOOK_HTML"]))
    env = dict(os.environ, LABSUPPORT_STATIC="1")
    env.pop("MPLBACKEND", None)  # the inline backend must draw the figures
    jb = Path(sys.executable).with_name("jupyter-book")
    proc = subprocess.run([str(jb), "build", ".", "--warningiserror", "--keep-going"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=1500)
    return BookBuild(proc.returncode, proc.stdout + proc.stderr, ROOT / "_build" / "html")


@pytest.fixture(scope="session")
def book_html(book_build) -> Path:
    """The built book's html folder (_build/html); the build's warnings are tests/book's to report."""
    if not (book_build.html / "index.html").exists():
        pytest.fail("the book did not build:\n" + book_build.log[-3000:])
    return book_build.html
