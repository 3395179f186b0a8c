"""Shared helpers of the decoder tests: a small float64 model, random latents and an independent per-pair
reference implementation of DESIGN.md section 5 (:func:`reference_decode`)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from _common import F64

from enf import EquivariantNeuralField, Latents, geometry
from enf import testing as enf_testing
from enf.geometry import SE2
from enf.geometry.frames import rotation_2d
from enf.nn import RandomFourierFeatures

EQUIVARIANT = geometry.names(equivariant=True)
CONTEXT_DIM = 8
#: value-conditioning MLP width: 0 (linear in gamma_v; the fully separable path for translations) or 16
VALUE_HIDDEN = [0, 16]
SMALL = dict(
    context_dim=CONTEXT_DIM,
    hidden_dim=32,
    num_heads=2,
    num_query_frequencies=8,
    num_value_frequencies=8,
    value_hidden_dim=16,
    num_output_layers=1,
)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def make_model(
    geom,
    *,
    num_out: int = 3,
    k_nearest=None,
    use_window: bool = True,
    channel_modulation: bool = False,
    seed: int = 0,
    **overrides,
) -> EquivariantNeuralField:
    """A small float64 decoder with every parameter perturbed away from its special initial value."""
    kw = {**SMALL, **overrides}
    torch.manual_seed(seed)
    model = EquivariantNeuralField(
        geometry=geom,
        num_out=num_out,
        k_nearest=k_nearest,
        use_window=use_window,
        channel_modulation=channel_modulation,
        **kw,
    )
    assert model.attention.channel_modulation == channel_modulation
    # Perturb every parameter so that no layer sits at a special value (LayerNorm 1/0, zero biases).
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model.double()


def random_latents(geom, batch_size: int, num_latents: int, *, seed: int = 0, context_dim: int = CONTEXT_DIM):
    """Random (non-grid) poses, random context and random positive windows, float64."""
    return enf_testing.random_latents(geom, batch_size, num_latents, context_dim, generator=gen(seed))


def random_coords(geom, batch_size: int, num_coords: int, *, seed: int = 1):
    return geom.sample_coords(batch_size, num_coords, generator=gen(seed), dtype=F64)


def _rff(embedding: RandomFourierFeatures, a: torch.Tensor) -> torch.Tensor:
    phase = a @ embedding.weight.to(a.dtype)
    return torch.cat([torch.sin(phase), torch.cos(phase)], dim=-1)


def reference_decode(model: EquivariantNeuralField, coords, z: Latents, *, k_nearest=None) -> torch.Tensor:
    """Straightforward per-pair implementation of DESIGN.md section 5 (no algebraic rewrites).

    ``q_ij = W_q gamma_q(a_ij) + b_q`` is formed for every pair, ``beta_ij`` too, and the k-nearest selection
    is a mask of ``-inf`` on all but the ``k`` latents with the smallest ``d2`` and those tied with the k-th
    (``d2 <= d_(k) + tol (1 + d_(k))``, ``tol`` 1e-9 in float64; found by ``sort``).
    """
    att = model.attention
    geom = att.geometry
    b, n, _ = coords.shape
    num_latents = z.num_latents
    heads, head_dim = att.num_heads, att.head_dim
    h = att.latent_norm(att.latent_proj(z.context))
    keys = att.key(h).view(b, 1, num_latents, heads, head_dim)
    values = att.value(h).view(b, 1, num_latents, heads, head_dim)
    a = geom.pair_invariant(coords.unsqueeze(2), z.poses.unsqueeze(1))  # [B, N, L, inv]
    q = att.query(_rff(att.query_embedding, a)).view(b, n, num_latents, heads, head_dim)
    logits = (q * keys).sum(-1) / math.sqrt(head_dim)  # [B, N, L, H]
    d2 = geom.pair_distance2(coords.unsqueeze(2), z.poses.unsqueeze(1))  # [B, N, L]
    if att.use_window:
        logits = logits - (d2 / z.window[..., 0].square().unsqueeze(1)).unsqueeze(-1)
    if k_nearest is not None and k_nearest < num_latents:
        kth = torch.sort(d2, dim=-1).values[..., k_nearest - 1 : k_nearest]  # [B, N, 1]
        tol = 1e-9 if d2.dtype == F64 else 1e-5
        keep = d2 <= kth + tol * (1.0 + kth.abs())  # the k nearest and every latent tied with the k-th
        logits = logits.masked_fill(~keep.unsqueeze(-1), -math.inf)
    weights = torch.softmax(logits, dim=2)
    e = _rff(att.value_embedding, a)
    if att.value_hidden is not None:
        e = F.gelu(att.value_hidden(e))
    alpha = att.value_scale(e)
    alpha = alpha.view(b, n, num_latents, heads, head_dim) if att.channel_modulation else alpha.unsqueeze(-1)
    beta = att.value_shift(e).view(b, n, num_latents, heads, head_dim)
    modulated = values * (1.0 + alpha) + beta
    out = (weights.unsqueeze(-1) * modulated).sum(2).reshape(b, n, heads * head_dim)
    return model.head(out)


class BrokenSE2(SE2):
    """SE(2) with the classic bug: ``R_o (x - q)`` instead of ``R_o^T (x - q)``. Registered nowhere."""

    def pair_invariant(self, x, poses):
        d = x - poses[..., :2]
        c, s = rotation_2d(poses[..., 2:])
        return torch.stack([c * d[..., 0] - s * d[..., 1], s * d[..., 0] + c * d[..., 1]], dim=-1)
