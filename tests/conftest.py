"""Fixtures shared by the test modules.

Layout (one test module per module of the code it tests):

* ``tests/unit/test_<module>.py``   labsupport's modules (``labsupport/<module>.py``, ``labsupport/models/<m>.py``)
* ``tests/checks/``                 the self-checks, their mistake tables and the mutant catalogues of every lab
* ``tests/instructor/``             the instructor tooling (grading, sandbox, attack suite, bench)
* ``tests/book/``                   the book build and the numbers it prints
* ``tests/browser/``                the built site and JupyterLab in a real browser (Playwright + Chromium)

Tests run with ``--import-mode=importlib`` (basenames may repeat across folders); this folder is on
``sys.path`` so that helper modules such as ``checkhelpers`` import by name.
"""
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))


@pytest.fixture
def one_torch_thread():
    """Tiny models: one thread is as fast, and a loaded machine does not slow the tests down many times.

    Use it for a whole module with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
