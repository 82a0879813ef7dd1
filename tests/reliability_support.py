"""Shared by the ``test_reliability_*`` modules."""
from __future__ import annotations

import os

import pytest
import torch


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread here and in child processes (``OMP_NUM_THREADS``): the same
    arithmetic in every process, and tiny models run several times faster without
    OpenMP hand-offs on a shared, busy machine."""
    threads, env = torch.get_num_threads(), os.environ.get("OMP_NUM_THREADS")
    torch.set_num_threads(1)
    os.environ["OMP_NUM_THREADS"] = "1"
    yield
    torch.set_num_threads(threads)
    if env is None:
        os.environ.pop("OMP_NUM_THREADS", None)
    else:
        os.environ["OMP_NUM_THREADS"] = env
