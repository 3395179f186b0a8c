"""`enf.geometry.random_rotation`: seeded, proper and Haar-uniform (it turns the rotated test shapes of
classification)."""

from __future__ import annotations

import torch

from enf.geometry import random_rotation


def test_random_rotations_are_seeded_proper_and_uniform() -> None:
    r = random_rotation(4000, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    eye = torch.eye(3, dtype=torch.float64)
    assert torch.allclose(r @ r.transpose(-1, -2), eye.expand_as(r), atol=1e-12)
    assert torch.allclose(torch.linalg.det(r), torch.ones(4000, dtype=torch.float64))
    again = random_rotation(4000, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert torch.equal(r, again)
    # Haar measure: E[R] = 0 and E[R_ij^2] = 1/3; rotations about one fixed axis (control) keep E[R_zz] = 1
    assert r.mean(0).abs().max() < 0.05 and ((r**2).mean(0) - 1 / 3).abs().max() < 0.03
    about_z = r.clone()
    about_z[:, 2, :], about_z[:, :, 2], about_z[:, 2, 2] = 0.0, 0.0, 1.0
    assert about_z.mean(0).abs().max() > 0.5
