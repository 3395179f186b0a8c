"""Tests of the decoder's recipe options: the gated (GeGLU) feed-forward head and invariant self-attention
over the latents. Steerability in float64 for every equivariant geometry, with controls that must break."""

from __future__ import annotations

import pytest
import torch
from _common import F64
from _decoder_utils import EQUIVARIANT, gen, make_model, random_coords, random_latents

from enf import Latents, geometry, testing
from enf.geometry import SE2
from enf.nn import GatedFeedForward, LatentSelfAttention, nearest_latent_mask

OPTIONS = [
    dict(feed_forward="geglu"),
    dict(num_latent_layers=2),
    dict(num_latent_layers=1, latent_k_nearest=4, feed_forward="geglu"),
    dict(head_hidden_dim=16),
    dict(head_hidden_dim=16, feed_forward="geglu"),
]


class PoseBrokenSE2(SE2):
    """SE(2) whose latent-latent invariant is the raw offset ``q_j - q_i`` (not rotated into i's frame);
    the latent-query invariant is intact. Registered nowhere."""

    def pose_invariant(self, poses_i, poses_j):
        d = poses_i[..., :2] - poses_j[..., :2]
        return torch.cat([d, torch.zeros_like(d)], dim=-1)


@pytest.mark.parametrize(
    "options", OPTIONS, ids=["geglu", "latent_attention", "both_k4", "narrow", "narrow_geglu"]
)
@pytest.mark.parametrize("name", EQUIVARIANT)
def test_options_keep_the_decoder_steerable(name, options):
    geom = geometry.get(name)
    model = make_model(geom, **options)  # every parameter perturbed: the zero-initialised outputs are not 0
    z = random_latents(geom, 2, 12, seed=3)
    x = random_coords(geom, 2, 24, seed=4)
    testing.assert_steerable(model, geom, x, z, num_elements=4, generator=gen(5))
    assert testing.steerability_error(model, geom, x, z, num_elements=4, generator=gen(6)) < 1e-9
    assert model(x, z).std(dim=1).min() > 1e-4


def test_latent_attention_with_a_non_invariant_edge_breaks_steerability():
    x_geom, broken = geometry.get("se2"), PoseBrokenSE2()
    z = random_latents(x_geom, 2, 12, seed=7)
    x = random_coords(x_geom, 2, 24, seed=8)
    # without latent attention the broken pose invariant is never used: still steerable
    testing.assert_steerable(make_model(broken), "se2", x, z, num_elements=4, generator=gen(9))
    with pytest.raises(AssertionError, match="not steerable"):
        testing.assert_steerable(
            make_model(broken, num_latent_layers=1), "se2", x, z, num_elements=4, generator=gen(9)
        )
    # the same weights on the correct geometry pass
    testing.assert_steerable(
        make_model(x_geom, num_latent_layers=1), "se2", x, z, num_elements=4, generator=gen(9)
    )


@pytest.mark.parametrize("options", OPTIONS[1:3], ids=["latent_attention", "both_k4"])
def test_absolute2d_with_options_is_not_steerable(options):
    geom = geometry.get("absolute2d")
    model = make_model(geom, **options)
    z = random_latents(geom, 2, 12, seed=10)
    x = random_coords(geom, 2, 24, seed=11)
    assert testing.steerability_error(model, geom, x, z, num_elements=4, generator=gen(12)) > 1e-3


@pytest.mark.parametrize("name", ["se2", "sphere", "se3"])
def test_latent_attention_is_permutation_equivariant_and_not_the_identity(name):
    geom = geometry.get(name)
    model = make_model(geom, num_latent_layers=2, latent_k_nearest=5)
    z = random_latents(geom, 2, 12, seed=13)
    mixed = model.latent_attention(z)
    perm = torch.randperm(12, generator=gen(14))
    z_perm = Latents(poses=z.poses[:, perm], context=z.context[:, perm], window=z.window[:, perm])
    torch.testing.assert_close(
        model.latent_attention(z_perm).context, mixed.context[:, perm], atol=1e-12, rtol=0
    )
    assert torch.equal(mixed.poses, z.poses) and torch.equal(mixed.window, z.window)
    assert (mixed.context - z.context).abs().max() > 1e-3


def test_latent_attention_starts_as_the_identity_and_ignores_latents_beyond_k():
    geom = geometry.get("translation2d")
    torch.manual_seed(0)
    attention = LatentSelfAttention(geometry=geom, context_dim=8, num_layers=1, k_nearest=3).double()
    z = random_latents(geom, 1, 10, seed=15)
    torch.testing.assert_close(attention(z).context, z.context, atol=0, rtol=0)  # zero-initialised outputs
    with torch.no_grad():
        for p in attention.parameters():
            p.add_(0.1 * torch.randn_like(p))
    mask = nearest_latent_mask(geom, z.poses, 3)[0]  # [i, j]
    far = int((~mask[0]).nonzero()[0])  # a latent outside latent 0's 3 nearest
    moved = z.context.clone()
    moved[0, far] += torch.randn(
        8, generator=gen(16), dtype=F64
    )  # not a constant shift: LayerNorm drops those
    out = attention(z).context
    out_moved = attention(Latents(poses=z.poses, context=moved, window=z.window)).context
    torch.testing.assert_close(out_moved[0, 0], out[0, 0], atol=1e-12, rtol=0)
    near = int(next(j for j in mask[0].nonzero().flatten().tolist() if j != 0))
    moved[0, near] += torch.randn(8, generator=gen(17), dtype=F64)
    out_near = attention(Latents(poses=z.poses, context=moved, window=z.window)).context
    assert (out_near[0, 0] - out[0, 0]).abs().max() > 1e-4


def test_gated_feed_forward_is_the_geglu_formula():
    torch.manual_seed(0)
    block = GatedFeedForward(dim=6, hidden_dim=4).double()
    x = torch.randn(3, 5, 6, dtype=F64)
    h = torch.nn.functional.layer_norm(x, (6,), block.norm.weight, block.norm.bias)
    w, b = block.gate_value.weight, block.gate_value.bias
    gate, value = h @ w[:4].T + b[:4], h @ w[4:].T + b[4:]
    expected = x + (torch.nn.functional.gelu(gate) * value) @ block.out.weight.T + block.out.bias
    torch.testing.assert_close(block(x), expected, atol=1e-12, rtol=0)
    assert torch.equal(GatedFeedForward(dim=6, zero_init=True).double()(x), x)


def test_bad_option_values_are_refused():
    with pytest.raises(ValueError, match="feed_forward must be one of"):
        make_model(geometry.get("se2"), feed_forward="swiglu")
    with pytest.raises(ValueError, match="num_latent_layers must be >= 0"):
        make_model(geometry.get("se2"), num_latent_layers=-1)
    with pytest.raises(ValueError, match="head_hidden_dim must be None or >= 1"):
        make_model(geometry.get("se2"), head_hidden_dim=0)
    with pytest.raises(ValueError, match="divide context_dim"):
        LatentSelfAttention(geometry=geometry.get("se2"), context_dim=9, num_heads=2)


def test_a_narrow_head_has_fewer_parameters_and_the_default_head_keeps_its_state_dict_keys():
    geom = geometry.get("se2")
    wide, narrow = make_model(geom), make_model(geom, head_hidden_dim=8)
    head_size = sum(p.numel() for p in wide.head.parameters())
    assert sum(p.numel() for p in narrow.head.parameters()) < head_size / 2
    # today's layout: Linear, GELU per hidden layer, then the output Linear (checkpoints keep loading)
    assert [k for k in wide.head.state_dict()] == ["0.weight", "0.bias", "2.weight", "2.bias"]


def test_chunked_decoding_with_latent_attention_is_the_same_function():
    geom = geometry.get("se2")
    model = make_model(geom, num_latent_layers=1, latent_k_nearest=4)
    z = random_latents(geom, 2, 12, seed=20)
    x = random_coords(geom, 2, 24, seed=21)
    torch.testing.assert_close(model(x, z, chunk_size=5), model(x, z), atol=1e-12, rtol=0)
