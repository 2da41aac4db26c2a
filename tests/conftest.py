"""Fixtures shared by the test modules."""
import pytest
import torch


@pytest.fixture
def one_torch_thread():
    """Tiny models: one thread is as fast, and a loaded machine does not slow the tests down many times.

    Use it for a whole module with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
