"""Run these small-tensor tests single-threaded: on a shared 2-core machine intra-op threads only
contend (a tiny forward pass is ~30x slower with 2 busy threads than with 1)."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _single_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
