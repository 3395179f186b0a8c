"""Bi-invariant cross-attention from coordinates to a latent point cloud (DESIGN.md section 5).

For coordinate ``x_i`` and latent ``j`` with ``a_ij = invariant(x_i, p_j)``, ``d2_ij = distance2(x_i, p_j)``:

    h_j = LayerNorm(W_h c_j),  k_j = W_k h_j,  v_j = W_v h_j
    q_ij = W_q gamma_q(a_ij) + b_q
    logit_ij = <q_ij, k_j> / sqrt(D) - d2_ij / s_j^2                      (per head)
    e_ij = GELU(W_1 gamma_v(a_ij) + b_1)      (or gamma_v(a_ij) when value_hidden_dim == 0)
    alpha_ij = W_alpha e_ij + b_alpha,  beta_ij = W_beta e_ij + b_beta
    out_i = sum_j softmax_j(logit)_ij * (v_j * (1 + alpha_ij) + beta_ij)      (heads concatenated)

Only invariants enter, so ``out(g x, g z) = out(x, z)``. Optionally only the ``k_nearest`` latents with the
smallest ``d2_ij`` (an invariant, so the selection is equivariant) are attended to.

Two algebraic rewrites keep the per-pair work small without changing the function:
- the query projection is folded into the keys: ``<W_q gamma + b_q, k_j> = <gamma, W_q^T k_j> + <b_q, k_j>``,
  so each pair costs ``2F`` multiply-adds per head instead of a ``2F x D`` matrix product;
- ``beta`` is linear in ``e``, so ``sum_j w_ij beta_ij = W_beta (sum_j w_ij e_ij) + b_beta`` is applied once
  per coordinate instead of once per pair.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from enf.geometry import Geometry
from enf.latents import Latents
from enf.nn.embedding import RandomFourierFeatures

__all__ = ["BiInvariantCrossAttention"]


class BiInvariantCrossAttention(nn.Module):
    """Cross-attention from coordinates to latents using only bi-invariant quantities.

    Args:
        geometry: the geometry providing ``pair_invariant`` and ``pair_distance2``.
        context_dim: width of the latent context vectors.
        hidden_dim: total attention width ``C``, split over heads (``D = C / num_heads``).
        num_heads: number of attention heads ``H``.
        num_query_frequencies: RFF frequencies ``F_q`` of the query embedding.
        num_value_frequencies: RFF frequencies ``F_v`` of the value-conditioning embedding.
        query_freq_scale: std of the query RFF frequencies.
        value_freq_scale: std of the value RFF frequencies.
        value_hidden_dim: hidden width of the value-conditioning MLP (0: linear in ``gamma_v``).
        k_nearest: attend only to the ``k`` nearest latents (by invariant distance); ``None`` for all.
        use_window: add the Gaussian window ``-d2 / s^2`` to the logits.
        channel_modulation: one ``alpha`` per channel (per-pair ``[.., C]`` work) instead of one per head.

    Shapes: ``coords [B, N, coord_dim]``, latents with ``L`` points -> ``[B, N, hidden_dim]``.
    """

    def __init__(
        self,
        *,
        geometry: Geometry,
        context_dim: int,
        hidden_dim: int = 128,
        num_heads: int = 2,
        num_query_frequencies: int = 32,
        num_value_frequencies: int = 32,
        query_freq_scale: float = 1.0,
        value_freq_scale: float = 1.0,
        value_hidden_dim: int = 0,
        k_nearest: int | None = None,
        use_window: bool = True,
        channel_modulation: bool = False,
    ) -> None:
        super().__init__()
        if hidden_dim % num_heads != 0:
            raise ValueError(f"hidden_dim ({hidden_dim}) must be divisible by num_heads ({num_heads})")
        if k_nearest is not None and k_nearest < 1:
            raise ValueError(f"k_nearest must be None or >= 1, got {k_nearest}")
        self.geometry = geometry
        self.hidden_dim = hidden_dim
        self.num_heads = num_heads
        self.head_dim = hidden_dim // num_heads
        self.k_nearest = k_nearest
        self.use_window = use_window
        self.channel_modulation = channel_modulation
        # a = x - q and everything linear in gamma(a): the whole layer is GEMMs over [B, N, L, H].
        self._fully_separable = (
            getattr(geometry, "invariant_is_difference", False)
            and value_hidden_dim == 0
            and not channel_modulation
        )

        self.latent_proj = nn.Linear(context_dim, hidden_dim)
        self.latent_norm = nn.LayerNorm(hidden_dim)
        self.key = nn.Linear(hidden_dim, hidden_dim)
        self.value = nn.Linear(hidden_dim, hidden_dim)

        inv_dim = geometry.invariant_dim
        self.query_embedding = RandomFourierFeatures(
            in_dim=inv_dim, num_frequencies=num_query_frequencies, freq_scale=query_freq_scale, seed=1
        )
        self.value_embedding = RandomFourierFeatures(
            in_dim=inv_dim, num_frequencies=num_value_frequencies, freq_scale=value_freq_scale, seed=2
        )
        self.query = nn.Linear(self.query_embedding.out_dim, hidden_dim)
        if value_hidden_dim > 0:
            self.value_hidden = nn.Linear(self.value_embedding.out_dim, value_hidden_dim)
            cond_dim = value_hidden_dim
        else:
            self.value_hidden = None
            cond_dim = self.value_embedding.out_dim
        self.value_scale = nn.Linear(cond_dim, hidden_dim if channel_modulation else num_heads)  # alpha
        self.value_shift = nn.Linear(cond_dim, hidden_dim)  # beta
        # Start close to unconditioned values: small alpha/beta.
        for lin in (self.value_scale, self.value_shift):
            nn.init.normal_(lin.weight, std=0.02 / math.sqrt(cond_dim))
            nn.init.zeros_(lin.bias)

    def forward(self, coords: Tensor, latents: Latents) -> Tensor:
        if self._fully_separable:
            return self._forward_separable(coords, latents)
        geom = self.geometry
        b, n, _ = coords.shape
        num_latents = latents.num_latents
        heads, head_dim = self.num_heads, self.head_dim

        # Per-latent features [B, L, ...]; the query projection is folded into the keys.
        h = self.latent_norm(self.latent_proj(latents.context))
        keys = rearrange(self.key(h), "b l (h d) -> b l h d", h=heads)
        values = self.value(h)  # [B, L, C]
        w_q = rearrange(self.query.weight, "(h d) f -> h d f", h=heads)
        b_q = rearrange(self.query.bias, "(h d) -> h d", h=heads)
        key_freq = torch.einsum("blhd,hdf->blhf", keys, w_q) / math.sqrt(head_dim)  # [B, L, H, 2Fq]
        key_bias = torch.einsum("blhd,hd->blh", keys, b_q) / math.sqrt(head_dim)  # [B, L, H]
        fq = key_freq.shape[-1]
        pair_feats = torch.cat(
            [
                rearrange(key_freq, "b l h f -> b l (h f)"),
                key_bias,
                latents.window.square().reciprocal(),
                latents.poses,
            ],
            dim=-1,
        )

        # Select latents per coordinate: [B, N, K, ...] with K = k_nearest, or broadcast [B, 1, L, ...].
        k = self.k_nearest
        idx = None
        if k is not None and k < num_latents:
            with torch.no_grad():
                d2_all = geom.distance2(coords, latents.poses)
                idx = torch.topk(d2_all, k, dim=-1, largest=False, sorted=False).indices  # [B, N, K]
            flat = (idx + num_latents * torch.arange(b, device=idx.device).view(b, 1, 1)).reshape(-1)
            sel = pair_feats.reshape(b * num_latents, -1).index_select(0, flat).view(b, n, k, -1)
        else:
            sel = pair_feats.unsqueeze(1)
        sel_key_freq, sel_key_bias, sel_inv_window2, sel_poses = torch.split(
            sel, [heads * fq, heads, 1, geom.pose_dim], dim=-1
        )

        x = coords.unsqueeze(2)  # [B, N, 1, coord_dim]
        a = geom.pair_invariant(x, sel_poses)  # [B, N, K, inv]
        if getattr(geom, "invariant_is_difference", False):
            logits = self._separable_logits(coords, latents.poses, key_freq, idx) + sel_key_bias
        else:
            gamma_q = self.query_embedding(a)  # [B, N, K, 2Fq]
            if idx is None:  # keys per latent: [B, L, H, 2Fq], contracted without broadcasting over N
                logits = torch.einsum("bnlf,blhf->bnlh", gamma_q, key_freq) + key_bias.unsqueeze(1)
            else:
                kf = sel_key_freq.unflatten(-1, (heads, fq))  # [B, N, K, H, 2Fq]
                logits = torch.einsum("bnkf,bnkhf->bnkh", gamma_q, kf) + sel_key_bias  # [B, N, K, H]
        if self.use_window:
            d2 = geom.pair_distance2(x, sel_poses)  # [B, N, K]
            logits = logits - d2.unsqueeze(-1) * sel_inv_window2
        weights = torch.softmax(logits, dim=2)  # [B, N, K, H]

        e = self.value_embedding(a)
        if self.value_hidden is not None:
            e = F.gelu(self.value_hidden(e))  # [B, N, K, E]
        e = e.expand(b, n, -1, -1)
        if self.channel_modulation:
            out = self._channel_modulated(weights, e, values, idx)
        else:
            out = self._head_modulated(weights, e, values, idx)
        # beta is linear in e: sum_j w_ij beta_ij = W_beta (sum_j w_ij e_ij) + b_beta.
        e_mean = torch.einsum("bnkh,bnke->bnhe", weights, e)
        w_beta = rearrange(self.value_shift.weight, "(h d) e -> h d e", h=heads)
        out = out + torch.einsum("bnhe,hde->bnhd", e_mean, w_beta)
        out = out + rearrange(self.value_shift.bias, "(h d) -> h d", h=heads)
        return rearrange(out, "b n h d -> b n (h d)")

    def _forward_separable(self, coords: Tensor, latents: Latents) -> Tensor:
        """The same function when ``a = x - q`` and ``alpha, beta`` are linear in ``gamma_v(a)``.

        Every per-pair quantity is ``[B, N, L, H]``: logits and ``alpha`` are GEMMs of per-coordinate
        and per-latent Fourier features, and ``sum_j w_ij gamma_v(x_i - q_j)`` is a GEMM of the attention
        weights with per-latent features. k-nearest selection becomes a mask on the dense logits.
        """
        geom = self.geometry
        heads, head_dim = self.num_heads, self.head_dim
        h = self.latent_norm(self.latent_proj(latents.context))
        keys = rearrange(self.key(h), "b l (h d) -> b l h d", h=heads)
        w_q = rearrange(self.query.weight, "(h d) f -> h d f", h=heads)
        b_q = rearrange(self.query.bias, "(h d) -> h d", h=heads)
        key_freq = torch.einsum("blhd,hdf->blhf", keys, w_q) / math.sqrt(head_dim)  # [B, L, H, 2Fq]
        key_bias = torch.einsum("blhd,hd->blh", keys, b_q) / math.sqrt(head_dim)  # [B, L, H]
        positions = latents.poses[..., : geom.position_dim]

        logits = self._separable_logits(coords, positions, key_freq, None) + key_bias.unsqueeze(1)
        d2 = geom.distance2(coords, latents.poses)  # [B, N, L]
        if self.use_window:
            logits = logits - (d2 / latents.window.squeeze(-1).square().unsqueeze(1)).unsqueeze(-1)
        k = self.k_nearest
        if k is not None and k < latents.num_latents:
            with torch.no_grad():
                idx = torch.topk(d2, k, dim=-1, largest=False, sorted=False).indices
                mask = torch.full_like(d2, float("-inf")).scatter(2, idx, 0.0)
            logits = logits + mask.unsqueeze(-1)
        weights = torch.softmax(logits, dim=2)  # [B, N, L, H]

        # alpha_ij = W_alpha gamma_v(x_i - q_j) + b_alpha, one per head: the same separable form.
        b = coords.shape[0]
        w_alpha = self.value_scale.weight.expand(b, latents.num_latents, -1, -1)  # [B, L, H, 2Fv]
        alpha = self._separable_logits(coords, positions, w_alpha, None, embedding=self.value_embedding)
        scaled = weights * (1.0 + alpha + self.value_scale.bias)
        v = rearrange(self.value(h), "b l (h d) -> b h l d", h=heads)
        out = torch.matmul(rearrange(scaled, "b n l h -> b h n l"), v)  # [B, H, N, D]

        # sum_j w_ij gamma_v(x_i - q_j) from sin(A - B), cos(A - B) expansions.
        weight = self.value_embedding.weight.to(coords.dtype)
        phase_x, phase_q = coords @ weight, positions @ weight  # [B, N, F], [B, L, F]
        w_h = rearrange(weights, "b n l h -> b h n l")
        wc = torch.matmul(w_h, torch.cos(phase_q).unsqueeze(1))  # [B, H, N, F]
        ws = torch.matmul(w_h, torch.sin(phase_q).unsqueeze(1))
        sx, cx = torch.sin(phase_x).unsqueeze(1), torch.cos(phase_x).unsqueeze(1)
        e_mean = torch.cat([sx * wc - cx * ws, cx * wc + sx * ws], dim=-1)  # [B, H, N, 2Fv]
        w_beta = rearrange(self.value_shift.weight, "(h d) e -> h e d", h=heads)
        out = out + torch.matmul(e_mean, w_beta) + rearrange(self.value_shift.bias, "(h d) -> h 1 d", h=heads)
        return rearrange(out, "b h n d -> b n (h d)")

    def _separable_logits(
        self,
        coords: Tensor,
        positions: Tensor,
        key_freq: Tensor,
        idx: Tensor | None,
        *,
        embedding: RandomFourierFeatures | None = None,
    ) -> Tensor:
        """Query logits for ``a = x - q`` as one GEMM over per-coordinate and per-latent features.

        With ``A = x W`` and ``B = q W``: ``sin(A - B) = sin A cos B - cos A sin B`` and
        ``cos(A - B) = cos A cos B + sin A sin B``, so ``<gamma(x - q), u> = <[sin A, cos A], psi(B, u)>``.
        Returns ``[B, N, K, H]`` (``K = L`` without k-nearest selection).
        """
        weight = (embedding or self.query_embedding).weight.to(coords.dtype)  # [inv, F]
        phase_x = coords @ weight  # [B, N, F]
        phase_q = positions[..., : weight.shape[0]] @ weight  # [B, L, F]
        feat_x = torch.cat([torch.sin(phase_x), torch.cos(phase_x)], dim=-1)  # [B, N, 2F]
        u_sin, u_cos = key_freq.chunk(2, dim=-1)  # [B, L, H, F] each
        cos_q, sin_q = torch.cos(phase_q).unsqueeze(2), torch.sin(phase_q).unsqueeze(2)
        psi = torch.cat(
            [u_sin * cos_q + u_cos * sin_q, u_cos * cos_q - u_sin * sin_q], dim=-1
        )  # [B, L, H, 2F]
        heads = psi.shape[2]
        dense = torch.matmul(feat_x, rearrange(psi, "b l h f -> b f (l h)"))  # [B, N, L*H]
        dense = rearrange(dense, "b n (l h) -> b n l h", h=heads)
        if idx is None:
            return dense
        return torch.gather(dense, 2, idx.unsqueeze(-1).expand(-1, -1, -1, heads))

    def _head_modulated(self, weights: Tensor, e: Tensor, values: Tensor, idx: Tensor | None) -> Tensor:
        """``sum_j w_ij (1 + alpha_ij) v_j`` with one ``alpha`` per head, as a dense matmul -> ``[B, N, H, D]``."""
        b, n = weights.shape[:2]
        heads = self.num_heads
        scaled = weights * (1.0 + self.value_scale(e))  # [B, N, K, H]
        if idx is not None:
            num_latents = values.shape[1]
            dense = weights.new_zeros(b, n, num_latents, heads)
            scaled = dense.scatter(2, idx.unsqueeze(-1).expand(-1, -1, -1, heads), scaled)
        v = rearrange(values, "b l (h d) -> b h l d", h=heads)
        return rearrange(torch.matmul(rearrange(scaled, "b n l h -> b h n l"), v), "b h n d -> b n h d")

    def _channel_modulated(self, weights: Tensor, e: Tensor, values: Tensor, idx: Tensor | None) -> Tensor:
        """``sum_j w_ij v_j * (1 + alpha_ij)`` with one ``alpha`` per channel (per-pair work) -> ``[B, N, H, D]``."""
        b, n, _, heads = weights.shape
        if idx is not None:
            num_latents = values.shape[1]
            flat = (idx + num_latents * torch.arange(b, device=idx.device).view(b, 1, 1)).reshape(-1)
            sel_values = (
                values.reshape(b * num_latents, -1).index_select(0, flat).view(b, n, idx.shape[-1], -1)
            )
        else:
            sel_values = values.unsqueeze(1)
        modulated = rearrange(sel_values * (1.0 + self.value_scale(e)), "b n k (h d) -> b n k h d", h=heads)
        return torch.einsum("bnkh,bnkhd->bnhd", weights, modulated)
