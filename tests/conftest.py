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


def rnn_bitwise() -> bool:
    """Whether replayed LSTM/GRU steps are expected bitwise equal to eager on this machine.
    Op by op, the CPU RNN kernels (oneDNN's mkldnn_rnn_layer and its backward) gave eager's bits
    on the machines of earlier CI runs, but not on an AMD EPYC with torch's CPU capability AVX2
    (2026-12-03): the loss equal, gradients different in the last bits. On AVX2 and below the
    recurrent tests compare within 1e-6 instead of bitwise."""
    torch = pytest.importorskip("torch")
    return torch.backends.cpu.get_cpu_capability() not in ("DEFAULT", "AVX2")
