"""Constants shared by the test files (importable from every test folder: pytest puts ``tests/`` on the path)."""

from __future__ import annotations

import torch

F64 = torch.float64
"""The dtype of every property test: equivariance and invariance are checked at float64 tolerance."""
