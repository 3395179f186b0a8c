"""Moment frames and moment-posed Meta-SGD: encoding a moved signal gives the moved latents, with no g given."""

from __future__ import annotations

import math

import pytest
import torch

from enf import EquivariantNeuralField
from enf.fitting import MetaSGD, moment_frame
from enf.geometry import GroupElement, get
from enf.testing import act_latents, assert_equivariant


def _blobs(batch: int, num_points: int, dim: int, generator: torch.Generator):
    """Random points and a skewed, anisotropic intensity on them (well-conditioned moment frames)."""
    x = 2 * torch.rand(batch, num_points, dim, generator=generator, dtype=torch.float64) - 1
    scale = torch.tensor([0.5, 0.25, 0.12][:dim], dtype=torch.float64)
    centre = 0.3 * torch.randn(batch, 1, dim, generator=generator, dtype=torch.float64)
    u = (x - centre) / scale
    y = torch.exp(-0.5 * u.square().sum(-1, keepdim=True)) * (
        1.5 + torch.tanh(u[..., :1] + 0.5 * u[..., 1:2])
    )
    return x, torch.cat([y, 0.5 * y], dim=-1)  # two channels: the weights use their mean


def _random_euclidean(batch: int, dim: int, generator: torch.Generator, *, reflect: bool = False):
    q, r = torch.linalg.qr(torch.randn(batch, dim, dim, generator=generator, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1))[:, None, :]
    det = torch.linalg.det(q)
    want = -1.0 if reflect else 1.0
    q = torch.cat([q[..., :1] * (det * want)[:, None, None], q[..., 1:]], dim=-1)
    return q, torch.randn(batch, dim, generator=generator, dtype=torch.float64)


def _moved(x, rot, shift):
    return torch.einsum("bij,bnj->bni", rot, x) + shift[:, None, :]


@pytest.mark.parametrize("dim", [2, 3])
def test_the_moment_frame_moves_with_the_signal(dim):
    gen = torch.Generator().manual_seed(dim)
    for _ in range(5):
        x, y = _blobs(4, 300, dim, gen)
        rot, shift = _random_euclidean(4, dim, gen)
        f, fg = moment_frame(x, y), moment_frame(_moved(x, rot, shift), y)
        assert torch.allclose(fg.rotation, rot @ f.rotation, atol=1e-10)
        assert torch.allclose(
            fg.translation, torch.einsum("bij,bj->bi", rot, f.translation) + shift, atol=1e-10
        )
        assert torch.allclose(torch.linalg.det(f.rotation), torch.ones(4, dtype=torch.float64))


def test_a_proper_frame_cannot_follow_a_reflection_and_an_improper_one_can():
    gen = torch.Generator().manual_seed(7)
    x, y = _blobs(4, 300, 2, gen)
    rot, shift = _random_euclidean(4, 2, gen, reflect=True)
    xr = _moved(x, rot, shift)
    proper = (moment_frame(xr, y).rotation - rot @ moment_frame(x, y).rotation).abs().max()
    assert proper > 0.5  # negative control: det(R E) = -1 is no proper frame
    improper = moment_frame(xr, y, proper=False).rotation - rot @ moment_frame(x, y, proper=False).rotation
    assert improper.abs().max() < 1e-10


def test_the_frame_matches_a_closed_form():
    """Points on a line at angle a with more weight towards one end: the first axis is (cos a, sin a)."""
    t = torch.linspace(-1, 1, 101, dtype=torch.float64)
    for a in (0.3, 2.0, -2.5):
        direction = torch.tensor([math.cos(a), math.sin(a)], dtype=torch.float64)
        normal = torch.tensor([-math.sin(a), math.cos(a)], dtype=torch.float64)
        x = torch.cat([t[:, None] * direction, 0.01 * t[:, None] * normal + 0.3 * t[:, None] ** 2 * normal])
        x = x[None] + torch.tensor([0.2, -0.1], dtype=torch.float64)
        w = torch.cat([(t + 1.0) ** 2 + 0.1, torch.full_like(t, 0.1)])[None, :, None]  # heavier at t = +1
        frame = moment_frame(x, w)
        centroid = (w[0, :, 0, None] - 0.1) * x[0]
        centroid = centroid.sum(0) / (w[0, :, 0] - 0.1).sum()
        assert torch.allclose(frame.translation[0], centroid, atol=1e-12)
        # the mass sits near t = +1, so its third moment along +direction is negative: the axis points back
        expected = -direction
        assert torch.allclose(frame.rotation[0, :, 0], expected, atol=1e-3), (a, frame.rotation[0, :, 0])


def test_a_blank_signal_gets_the_identity_at_the_mean_point():
    x = torch.rand(2, 50, 2, dtype=torch.float64)
    frame = moment_frame(x, torch.full((2, 50, 1), 0.3, dtype=torch.float64))
    assert torch.equal(frame.rotation, torch.eye(2, dtype=torch.float64).expand(2, 2, 2))
    assert torch.allclose(frame.translation, x.mean(1))


def test_moment_frame_refuses_mismatched_shapes():
    with pytest.raises(ValueError, match="same B and N"):
        moment_frame(torch.zeros(2, 5, 2), torch.zeros(2, 4, 1))


def _encoder(geometry: str, init_frame: str):
    torch.manual_seed(0)
    dec = EquivariantNeuralField(geometry=geometry, context_dim=8, hidden_dim=32, num_heads=2, num_out=2)
    fit = MetaSGD(
        num_latents=9, geometry=dec.geometry, context_dim=8, num_inner_steps=2, init_frame=init_frame
    )
    return dec.double(), fit.double()


@pytest.mark.parametrize("geometry", ["se2", "isotropic2d", "se3"])
def test_moment_posed_encoding_is_equivariant(geometry):
    """fit(g.signal) = g.fit(signal) from the shared initial latent: no group element is given to the fit."""
    dec, fit = _encoder(geometry, "moments")
    geom = dec.geometry
    x, y = _blobs(3, 150, geom.coord_dim, torch.Generator().manual_seed(1))

    def encode(coords, signal):
        return fit(dec, coords, signal, create_graph=False)

    def act_in(g: GroupElement, inputs):
        coords, signal = inputs
        return (geom.act_coords(g, coords), signal)

    assert_equivariant(encode, geom, (x, y), act_in, act_latents(geom), num_samples=4, atol=1e-9)


def test_shared_initial_latent_encoding_is_not_equivariant():
    """Negative control: the same check fails when every fit starts from the unposed shared latent."""
    dec, fit = _encoder("se2", "shared")
    geom = dec.geometry
    x, y = _blobs(3, 150, 2, torch.Generator().manual_seed(1))
    g = geom.sample_group(3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    z = fit(dec, x, y, create_graph=False)
    zg = fit(dec, geom.act_coords(g, x), y, create_graph=False)
    assert (geom.act_poses(g, z.poses) - zg.poses).abs().max() > 1e-2


@pytest.mark.parametrize("geometry", ["translation2d", "torus2d", "sphere", "absolute2d"])
def test_moment_frames_are_refused_where_the_decoder_cannot_follow_them(geometry):
    with pytest.raises(ValueError, match="init_frame='moments' needs a geometry"):
        MetaSGD(num_latents=4, geometry=get(geometry), context_dim=4, init_frame="moments")


def test_unknown_init_frame_is_refused():
    with pytest.raises(ValueError, match="init_frame must be one of"):
        MetaSGD(num_latents=4, init_frame="pca")
