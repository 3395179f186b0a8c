"""``enf data``: generate through the CLI, resume, show, and a clear message for a missing solver."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from enf.cli import main
from enf.data.pde.dataset import PDETrajectories
from enf.data.pde.solvers.plane import DIFFUSION_PLANE


def test_generate_and_show_diffusion_plane(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    main(["data", "generate", "diffusion_plane", "--preset", "small", "--num-train", "3", "--num-test", "2"])
    train, test = (
        PDETrajectories("data/diffusion_plane/train.h5"),
        PDETrajectories("data/diffusion_plane/test.h5"),
    )
    assert (len(train), len(test)) == (3, 2) and train.geometry == "se2"
    params = DIFFUSION_PLANE.params("small", num_train=3, num_test=2)
    from enf.data.pde import trajectory_seed

    expected = DIFFUSION_PLANE.simulate(params, "test", [trajectory_seed(0, "test", 1)])[0]
    np.testing.assert_allclose(
        test[1]["fields"].numpy(), expected.reshape(expected.shape[0], -1, 1), rtol=1e-6
    )
    main(["data", "show", "data/diffusion_plane/test.h5", "--index", "1", "--out", "traj.png"])
    assert (tmp_path / "traj.png").stat().st_size > 5000


def test_unknown_parameter_and_missing_solver_give_clear_errors(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit, match="unknown parameter"):
        main(["data", "generate", "diffusion_plane", "--set", "viscosity=1"])
    monkeypatch.setitem(sys.modules, "torch_harmonics", None)  # import fails as if not installed
    monkeypatch.setitem(sys.modules, "torch_harmonics.quadrature", None)
    with pytest.raises(SystemExit, match=r"diffusion_sphere: .*pde"):
        main(["data", "generate", "diffusion_sphere", "--num-train", "1", "--num-test", "1"])


def test_show_uses_a_sequential_map_for_positive_fields_and_a_symmetric_one_for_signed_fields():
    from enf.plotting.pde import color_scale

    assert color_scale(np.array([0.5, 2.0, 3.0])) == ("viridis", 0.5, 3.0)  # a height or a temperature
    assert color_scale(np.array([-1.0, 0.2, 3.0])) == ("RdBu_r", -3.0, 3.0)  # white is 0
