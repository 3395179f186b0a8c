"""Bi-invariant cross-attention from coordinates to a latent point cloud (DESIGN.md section 5).

For coordinate ``x_i`` and latent ``j`` with ``a_ij = invariant(x_i, p_j)``, ``d2_ij = distance2(x_i, p_j)``:

    h_j = LayerNorm(W_h c_j),  k_j = W_k h_j,  v_j = W_v h_j
    q_ij = W_q gamma_q(a_ij) + b_q
    logit_ij = <q_ij, k_j> / sqrt(D) - d2_ij / s_j^2                      (per head)
    e_ij = GELU(W_1 gamma_v(a_ij) + b_1)      (or gamma_v(a_ij) when value_hidden_dim == 0)
    alpha_ij = W_alpha e_ij + b_alpha,  beta_ij = W_beta e_ij + b_beta
    out_i = sum_j softmax_j(logit)_ij * (v_j * (1 + alpha_ij) + beta_ij)      (heads concatenated)

Only invariants enter, so ``out(g x, g z) = out(x, z)``. Optionally only the ``k_nearest`` latents with the
smallest ``d2_ij`` (an invariant, so the selection is equivariant) are attended to; every latent tied with
the k-th nearest (up to :data:`TIE_TOLERANCE`) is kept too, so grids of coordinates and grid-initialised
latents give the same selection after any group element (see :func:`nearest_latents`). With k-nearest the
latents are gathered per coordinate and all per-pair work is ``O(B N K)``; without it, per-latent features
are contracted with per-pair embeddings as dense GEMMs.

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
from enf.nn.embedding import RandomFourierFeatures, fourier_features

__all__ = ["TIE_TOLERANCE", "BiInvariantCrossAttention", "nearest_latents", "tie_tolerance"]

#: Tie tolerance of the k-nearest selection per dtype (see :func:`nearest_latents`).
TIE_TOLERANCE: dict[torch.dtype, float] = {
    torch.float64: 1e-9,
    torch.float32: 1e-5,
    torch.float16: 1e-2,
    torch.bfloat16: 1e-2,
}


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
        k_nearest: attend only to the ``k`` nearest latents (by invariant distance, ties with the k-th all
            kept: :func:`nearest_latents`); ``None`` for all.
        k_nearest_mode: ``gather``, ``mask`` or ``auto`` (see :meth:`_masks` and :meth:`_dense_value_sum`);
            the same function.
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
        k_nearest_mode: str = "auto",
        use_window: bool = True,
        channel_modulation: bool = False,
    ) -> None:
        super().__init__()
        if num_heads < 1 or hidden_dim < 1:
            raise ValueError(f"num_heads and hidden_dim must be >= 1, got {num_heads} and {hidden_dim}")
        if hidden_dim % num_heads != 0:
            raise ValueError(f"hidden_dim ({hidden_dim}) must be divisible by num_heads ({num_heads})")
        if k_nearest is not None and k_nearest < 1:
            raise ValueError(f"k_nearest must be None or >= 1, got {k_nearest}")
        if k_nearest_mode not in ("auto", "gather", "mask"):
            raise ValueError(f"k_nearest_mode must be 'auto', 'gather' or 'mask', got {k_nearest_mode!r}")
        self.geometry = geometry
        self.hidden_dim = hidden_dim
        self.num_heads = num_heads
        self.head_dim = hidden_dim // num_heads
        self.k_nearest = k_nearest
        self.k_nearest_mode = k_nearest_mode
        self.use_window = use_window
        self.channel_modulation = channel_modulation
        # a = x - q and everything linear in gamma(a): the whole layer is GEMMs over [B, N, L, H].
        self._fully_separable = (
            getattr(geometry, "invariant_is_difference", False)
            and value_hidden_dim == 0
            and not channel_modulation
        )
        if k_nearest_mode == "mask" and not self._fully_separable:
            raise ValueError(
                "k_nearest_mode='mask' needs a difference invariant (translation geometries) with "
                "value_hidden_dim=0 and channel_modulation=False; use 'gather' or 'auto'"
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
        selection = self._select(coords, latents.poses)
        if selection is not None:
            if self._masks(latents.num_latents, selection[0].shape[-1]):
                return self._forward_separable(coords, latents, selection=selection)
            return self._forward_gathered(coords, latents, *selection)
        if self._fully_separable:
            return self._forward_separable(coords, latents)
        return self._forward_dense(coords, latents)

    def _masks(self, num_latents: int, num_selected: int) -> bool:
        """Whether the k-nearest selection runs as a mask on the dense GEMM path rather than gathered.

        Gathering is ``O(N K)`` but memory-bound; the GEMMs of the separable path are ``O(N L)`` with a
        small constant. On 2 CPU cores they break even near ``L = 32 K`` (see the latent-count sweep of
        ``enf bench --sweep``), so ``auto`` masks below that for translation geometries and gathers above.
        """
        if self.k_nearest_mode == "gather" or not self._fully_separable:
            return False
        return self.k_nearest_mode == "mask" or num_latents < MASK_MAX_LATENTS_PER_SELECTED * num_selected

    def _dense_value_sum(self, num_latents: int, num_selected: int) -> bool:
        """``auto`` below ``L = 32 K``: the gathered path's value sum runs as a dense GEMM (same function)."""
        return self.k_nearest_mode == "auto" and num_latents < MASK_MAX_LATENTS_PER_SELECTED * num_selected

    def _select(self, coords: Tensor, poses: Tensor) -> tuple[Tensor, Tensor] | None:
        """The tie-consistent k-nearest selection ``(idx, keep)``, or ``None`` to attend to all latents."""
        k = self.k_nearest
        if k is None or k >= poses.shape[1]:
            return None
        with torch.no_grad():
            d2 = self.geometry.distance2(coords.detach(), poses.detach())  # [B, N, L]
            idx, keep = nearest_latents(d2, k)
        if idx.shape[-1] == poses.shape[1] and bool(keep.all()):
            return (
                None  # every latent is tied with the k-th everywhere: the dense paths are the same function
            )
        return idx, keep

    def _latent_features(self, latents: Latents) -> tuple[Tensor, Tensor, Tensor]:
        """Per-latent ``key_freq [B, L, H, 2Fq]``, ``key_bias [B, L, H]`` (query projection folded into the
        keys, scaled by ``1/sqrt(D)``) and ``values [B, L, C]``."""
        heads = self.num_heads
        h = self.latent_norm(self.latent_proj(latents.context))
        keys = rearrange(self.key(h), "b l (h d) -> b l h d", h=heads)
        w_q = rearrange(self.query.weight, "(h d) f -> h d f", h=heads)
        b_q = rearrange(self.query.bias, "(h d) -> h d", h=heads)
        key_freq = torch.einsum("blhd,hdf->blhf", keys, w_q) / math.sqrt(self.head_dim)
        key_bias = torch.einsum("blhd,hd->blh", keys, b_q) / math.sqrt(self.head_dim)
        return key_freq, key_bias, self.value(h)

    def _value_conditioning(self, a: Tensor) -> Tensor:
        """``e = GELU(W_1 gamma_v(a) + b_1)`` (or ``gamma_v(a)``): ``[..., inv] -> [..., E]``."""
        e = self.value_embedding(a)
        if self.value_hidden is not None:
            e = F.gelu(self.value_hidden(e))
        return e

    def _add_shift(self, out: Tensor, weights: Tensor, e: Tensor) -> Tensor:
        """``out + sum_j w_ij beta_ij`` with ``beta`` linear in ``e``: ``W_beta (sum_j w_ij e_ij) + b_beta``.

        ``out [B, N, H, D]``, ``weights [B, N, K, H]``, ``e [B, N, K, E]`` -> ``[B, N, C]``.
        """
        heads = self.num_heads
        # one [K] x [K, E] product per (coordinate, head) as an explicit batched matmul: its backward gives a
        # contiguous [B N, K, E] gradient of e (an einsum's backward returned it transposed, and the add of that
        # strided gradient to e's other gradient cost more than the product itself)
        w_t = rearrange(weights, "b n k h -> (b n) h k")
        e_mean = torch.matmul(w_t, rearrange(e, "b n k e -> (b n) k e"))  # [B N, H, E]
        e_mean = e_mean.view(*weights.shape[:2], heads, -1)
        w_beta = rearrange(self.value_shift.weight, "(h d) e -> h d e", h=heads)
        out = out + torch.einsum("bnhe,hde->bnhd", e_mean, w_beta)
        out = out + rearrange(self.value_shift.bias, "(h d) -> h d", h=heads)
        return rearrange(out, "b n h d -> b n (h d)")

    def _forward_gathered(self, coords: Tensor, latents: Latents, idx: Tensor, keep: Tensor) -> Tensor:
        """k-nearest attention on the gathered pairs only: time and memory ``O(B N K)``, ``K = idx.shape[-1]``.

        ``idx [B, N, K]`` are the selected latents per coordinate and ``keep [B, N, K]`` masks (logit
        ``-inf``) the gathered entries beyond the tie threshold. The invariant is embedded per pair (for
        difference invariants ``a = x - q`` directly, which is also the numerically safest form).
        """
        geom = self.geometry
        b, n, num_sel = idx.shape
        num_latents = latents.num_latents
        heads = self.num_heads
        key_freq, key_bias, values = self._latent_features(latents)
        flat = rearrange(
            idx + num_latents * torch.arange(b, device=idx.device).view(b, 1, 1), "b n k -> (b n) k"
        )
        small = torch.cat([key_bias, latents.window.square().reciprocal(), latents.poses], dim=-1)
        small = small.reshape(b * num_latents, -1).index_select(0, flat.reshape(-1)).view(b, n, num_sel, -1)
        sel_key_bias, sel_inv_window2, sel_poses = torch.split(small, [heads, 1, geom.pose_dim], dim=-1)
        # Wide per-latent tables [B L, H, .] are gathered one neighbour slot at a time ([B N, H, .] each):
        # memory-bound multiply-adds instead of [B, N, K, H, .] temporaries or tiny batched matmuls.
        key_table = key_freq.reshape(b * num_latents, heads, -1)
        value_table = values.reshape(b * num_latents, heads, self.head_dim)

        x = coords.unsqueeze(2)  # [B, N, 1, coord_dim]
        a = geom.pair_invariant(x, sel_poses)  # [B, N, K, inv]
        # unbind, not gamma_q[:, j]: the backward of K slices would zero-fill K full-size gradients (O(K^2))
        gamma_q = self.query_embedding(a).reshape(b * n, num_sel, 1, -1).unbind(1)  # K x [B N, 1, 2Fq]
        logits = torch.stack(
            [(key_table.index_select(0, flat[:, j]) * gamma_q[j]).sum(-1) for j in range(num_sel)], dim=1
        ).view(b, n, num_sel, heads)
        logits = logits + sel_key_bias
        if self.use_window:
            logits = logits - geom.pair_distance2(x, sel_poses).unsqueeze(-1) * sel_inv_window2
        logits = logits.masked_fill(~keep.unsqueeze(-1), float("-inf"))
        weights = torch.softmax(logits, dim=2)  # [B, N, K, H]; masked entries are exactly 0

        e = self._value_conditioning(a)  # [B, N, K, E]
        if self.channel_modulation:  # per-pair [.., C] work by design
            scale = weights.unsqueeze(-1) * (
                1.0 + rearrange(self.value_scale(e), "b n k (h d) -> b n k h d", h=heads)
            )
        else:
            scale = (weights * (1.0 + self.value_scale(e))).unsqueeze(-1)  # [B, N, K, H, 1]
        if not self.channel_modulation and self._dense_value_sum(num_latents, num_sel):
            # sum_j s_ij v_j as one GEMM: the selected weights scattered into [B, N, L, H] (zeros elsewhere)
            dense = scale.new_zeros(b, n, num_latents, heads).scatter_add(
                2, idx.unsqueeze(-1).expand(-1, -1, -1, heads), scale.squeeze(-1)
            )
            v = rearrange(values, "b l (h d) -> b h l d", h=heads)
            out = rearrange(torch.matmul(rearrange(dense, "b n l h -> b h n l"), v), "b h n d -> b n h d")
            return self._add_shift(out, weights, e)
        scale = scale.reshape(b * n, num_sel, heads, -1).unbind(1)  # K x [B N, H, 1 or D]
        out = scale[0] * value_table.index_select(0, flat[:, 0])
        for j in range(1, num_sel):
            out = out + scale[j] * value_table.index_select(0, flat[:, j])
        out = out.view(b, n, heads, self.head_dim)  # [B, N, H, D]
        return self._add_shift(out, weights, e)

    def _forward_dense(self, coords: Tensor, latents: Latents) -> Tensor:
        """All latents, generic invariant: per-pair embeddings ``[B, N, L, ...]``, per-latent keys/values.

        The query features are built latent-major, ``[B, L, N, 2Fq]``, so that the key contraction is one
        batched GEMM without a permuted copy of them.
        """
        geom = self.geometry
        heads = self.num_heads
        key_freq, key_bias, values = self._latent_features(latents)
        x, poses = coords.unsqueeze(2), latents.poses.unsqueeze(1)  # [B, N, 1, c], [B, 1, L, p]
        if getattr(geom, "invariant_is_difference", False):
            logits = self._separable_logits(coords, latents.poses, key_freq)
        else:  # keys per latent: contracted without broadcasting over N
            phase = self._phase(coords, latents.poses, self.query_embedding, latent_major=True)
            gamma_q = fourier_features(phase)  # [B, L, N, 2Fq]
            logits = rearrange(gamma_q @ key_freq.transpose(-1, -2), "b l n h -> b n l h")
        logits = logits + key_bias.unsqueeze(1)
        if self.use_window:
            d2 = geom.pair_distance2(x, poses)  # [B, N, L]
            logits = logits - d2.unsqueeze(-1) * latents.window.square().reciprocal().unsqueeze(1)
        weights = torch.softmax(logits, dim=2)  # [B, N, L, H]

        if self.value_hidden is None:
            phase = self._phase(coords, latents.poses, self.value_embedding, latent_major=False)
            e = fourier_features(phase)  # [B, N, L, 2Fv]
        else:
            e = self._value_conditioning(geom.pair_invariant(x, poses))  # [B, N, L, E]
        if self.channel_modulation:
            alpha = rearrange(self.value_scale(e), "b n l (h d) -> b n l h d", h=heads)
            modulated = rearrange(values, "b l (h d) -> b 1 l h d", h=heads) * (1.0 + alpha)
            out = torch.einsum("bnlh,bnlhd->bnhd", weights, modulated)
        else:  # sum_j w_ij (1 + alpha_ij) v_j as one dense matmul
            scaled = rearrange(weights * (1.0 + self.value_scale(e)), "b n l h -> b h n l")
            v = rearrange(values, "b l (h d) -> b h l d", h=heads)
            out = rearrange(torch.matmul(scaled, v), "b h n d -> b n h d")
        return self._add_shift(out, weights, e)

    def _phase(
        self, coords: Tensor, poses: Tensor, embedding: RandomFourierFeatures, *, latent_major: bool
    ) -> Tensor:
        """Fourier phases ``invariant(x_i, p_j) W`` of all pairs: ``[B, L, N, F]`` if ``latent_major``, else
        ``[B, N, L, F]``.

        Where the invariant is affine in ``x`` for a fixed pose (a frame rotation: the geometry has
        ``linear_phase``), the frame is folded into the frequencies, ``x_i M_j + c_j``: a GEMM with inner
        dimension ``coord_dim`` and no ``[B, N, L, invariant_dim]`` tensor.
        """
        weight = embedding.weight.to(coords.dtype)  # [inv, F]
        fold = getattr(self.geometry, "linear_phase", None)
        if fold is None:
            if latent_major:
                return self.geometry.pair_invariant(coords.unsqueeze(1), poses.unsqueeze(2)) @ weight
            return self.geometry.pair_invariant(coords.unsqueeze(2), poses.unsqueeze(1)) @ weight
        m, c = fold(poses, weight)  # [B, L, coord_dim, F], [B, L, F] or None
        if latent_major:
            flat = coords @ rearrange(m, "b l c f -> b c (l f)")  # [B, N, L F]: no expanded copy of coords
            phase = rearrange(flat, "b n (l f) -> b l n f", l=m.shape[1])  # [B, L, N, F]
            return phase if c is None else phase + c.unsqueeze(2)
        phase = torch.einsum("bnc,blcf->bnlf", coords, m)  # [B, N, L, F]
        return phase if c is None else phase + c.unsqueeze(1)

    def _forward_separable(
        self, coords: Tensor, latents: Latents, *, selection: tuple[Tensor, Tensor] | None = None
    ) -> Tensor:
        """The same function when ``a = x - q`` and ``alpha, beta`` are linear in ``gamma_v(a)`` (all latents,
        or the k-nearest ``selection = (idx, keep)`` as a ``-inf`` mask on the dense logits).

        Every per-pair quantity is ``[B, N, L, H]``: logits and ``alpha`` are GEMMs of per-coordinate
        and per-latent Fourier features, and ``sum_j w_ij gamma_v(x_i - q_j)`` is a GEMM of the attention
        weights with per-latent features.
        """
        geom = self.geometry
        heads = self.num_heads
        key_freq, key_bias, values = self._latent_features(latents)
        positions = latents.poses[..., : geom.position_dim]

        logits = self._separable_logits(coords, positions, key_freq) + key_bias.unsqueeze(1)
        if self.use_window:
            d2 = geom.distance2(coords, latents.poses)  # [B, N, L]
            logits = logits - (d2 / latents.window.squeeze(-1).square().unsqueeze(1)).unsqueeze(-1)
        if selection is not None:
            idx, keep = selection
            with torch.no_grad():
                inf = torch.tensor(float("-inf"), dtype=logits.dtype, device=logits.device)
                mask = torch.full_like(logits[..., 0], float("-inf")).scatter(
                    2, idx, torch.where(keep, torch.zeros_like(inf), inf).to(logits.dtype)
                )
            logits = logits + mask.unsqueeze(-1)
        weights = torch.softmax(logits, dim=2)  # [B, N, L, H]

        # alpha_ij = W_alpha gamma_v(x_i - q_j) + b_alpha, one per head: the same separable form.
        b = coords.shape[0]
        w_alpha = self.value_scale.weight.expand(b, latents.num_latents, -1, -1)  # [B, L, H, 2Fv]
        alpha = self._separable_logits(coords, positions, w_alpha, embedding=self.value_embedding)
        scaled = weights * (1.0 + alpha + self.value_scale.bias)
        v = rearrange(values, "b l (h d) -> b h l d", h=heads)
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
        *,
        embedding: RandomFourierFeatures | None = None,
    ) -> Tensor:
        """Query logits for ``a = x - q`` as one GEMM over per-coordinate and per-latent features.

        With ``A = x W`` and ``B = q W``: ``sin(A - B) = sin A cos B - cos A sin B`` and
        ``cos(A - B) = cos A cos B + sin A sin B``, so ``<gamma(x - q), u> = <[sin A, cos A], psi(B, u)>``.
        ``coords [B, N, c]``, ``positions [B, L, >= c]``, ``key_freq [B, L, H, 2F]`` -> ``[B, N, L, H]``.
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
        return rearrange(dense, "b n (l h) -> b n l h", h=heads)


MASK_MAX_LATENTS_PER_SELECTED = 32


def tie_tolerance(dtype: torch.dtype) -> float:
    """Relative+absolute tolerance of :func:`nearest_latents`: ``1e-9`` (float64), ``1e-5`` (float32),
    ``1e-2`` (float16/bfloat16)."""
    return TIE_TOLERANCE.get(dtype, 1e-5)


def nearest_latents(d2: Tensor, k: int, *, tol: float | None = None) -> tuple[Tensor, Tensor]:
    """Tie-consistent k-nearest selection from squared distances ``d2 [B, N, L]``.

    Keeps, per coordinate, **every** latent with ``d2 <= d_(k) + tol * (1 + |d_(k)|)`` where ``d_(k)`` is
    the k-th smallest distance: latents tied with the k-th (exactly, or up to round-off, as on grids of
    coordinates and grid-initialised latents) are all kept, so the selection is the same after moving
    coordinates and latents by a group element. ``tol`` defaults to :func:`tie_tolerance` of ``d2.dtype``.

    Returns ``idx [B, N, K]`` (the ``K`` nearest latents, ``K = max over B, N of the number kept``, at least
    ``k`` and at most ``L``) and ``keep [B, N, K]`` (bool: within the threshold; always true for the ``k``
    nearest). Not differentiable (call under ``no_grad``).
    """
    if d2.dim() != 3:
        raise ValueError(f"d2 must be [B, N, L], got shape {tuple(d2.shape)}")
    num_latents = d2.shape[-1]
    if not 1 <= k <= num_latents:
        raise ValueError(f"k must be in [1, L = {num_latents}], got {k}")
    if d2.numel() == 0:
        empty = d2.new_zeros(*d2.shape[:2], k, dtype=torch.long)
        return empty, empty.bool()
    tol = tie_tolerance(d2.dtype) if tol is None else tol
    near = torch.topk(d2, k, dim=-1, largest=False, sorted=True)
    kth = near.values[..., -1:]  # [B, N, 1]
    threshold = kth + tol * (1.0 + kth.abs())
    num_kept = int((d2 <= threshold).sum(-1).max())
    if num_kept == k:
        return near.indices, torch.ones_like(near.indices, dtype=torch.bool)
    idx = torch.topk(d2, num_kept, dim=-1, largest=False, sorted=True).indices
    return idx, torch.gather(d2, -1, idx) <= threshold
