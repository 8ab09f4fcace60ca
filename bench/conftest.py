"""Shared by the benchmark suites."""
import pytest
import torch


@pytest.fixture
def one_cpu_thread():
    """On a shared 2-core CPU, OpenMP threads spinning against other jobs made medians
    swing 30x between runs; one thread is slower but repeatable. Restored afterwards;
    nothing changes on CUDA."""
    n = torch.get_num_threads()
    if not torch.cuda.is_available():
        torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
