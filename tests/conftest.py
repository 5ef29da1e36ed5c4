"""Shared fixtures."""

import pytest


@pytest.fixture
def one_thread():
    """Intra-op threads change the bits of CPU results: pin them for bitwise comparisons."""
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
