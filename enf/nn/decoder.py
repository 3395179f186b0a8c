"""The equivariant neural field decoder ``f_theta(x; z)``."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from enf.geometry import Geometry, get
from enf.latents import Latents
from enf.nn.attention import BiInvariantCrossAttention
from enf.nn.feed_forward import GatedFeedForward
from enf.nn.latent_attention import LatentSelfAttention

__all__ = ["FEED_FORWARDS", "EquivariantNeuralField"]

#: the per-query blocks after the cross-attention (``EquivariantNeuralField(feed_forward=...)``).
FEED_FORWARDS = ("mlp", "geglu")


class EquivariantNeuralField(nn.Module):
    """Bi-invariant cross-attention followed by a pointwise MLP: ``f(x; z) -> [B, N, num_out]``.

    Steerable by construction: ``f(g x; g z) = f(x; z)`` for every group element ``g`` of the geometry.

    Args:
        geometry: a :class:`~enf.geometry.Geometry` or its registry name.
        num_out: number of output channels ``C_out``.
        context_dim: width of latent context vectors.
        hidden_dim: attention width (split over heads) and MLP width.
        num_heads: attention heads.
        num_query_frequencies / num_value_frequencies: RFF sizes of the query / value embeddings.
        query_freq_scale / value_freq_scale: RFF frequency standard deviations.
        value_hidden_dim: hidden width of the value-conditioning MLP (0: linear).
        k_nearest: attend to the ``k`` nearest latents only (``None``: all latents); latents tied with the
            k-th are all kept, so the selection is exact on grids.
        k_nearest_mode: ``gather`` (per-pair work on the selected latents only, ``O(N k)``), ``mask``
            (a mask on the dense GEMM path of translation geometries, ``O(N L)`` with a small constant) or
            ``auto`` (mask below ``L = 32 k`` for translation geometries, gather otherwise). Same function.
        use_window: Gaussian window on the attention logits.
        channel_modulation: value conditioning ``alpha`` per channel (DESIGN form, per-pair ``[.., C]`` work)
            instead of per head (``beta`` is always per channel).
        num_output_layers: hidden layers of the output MLP (``feed_forward="mlp"``) or residual GeGLU blocks
            (``"geglu"``).
        head_hidden_dim: width of the output MLP / GeGLU blocks (``None``: ``hidden_dim``). The head is the
            widest per-query work; a narrower head (``hidden_dim -> head_hidden_dim`` first) is cheaper per
            query.
        feed_forward: ``"mlp"`` (``num_output_layers`` Linear + GELU layers, the ENF head) or ``"geglu"``
            (pre-norm residual gated blocks, :class:`~enf.nn.GatedFeedForward`, as in MetaLF).
        num_latent_layers: layers of invariant self-attention over the latents before decoding
            (:class:`~enf.nn.LatentSelfAttention`; ``0``: none). Contexts only: the decoder stays steerable.
        latent_k_nearest: each latent attends to its ``k`` nearest latents in that self-attention
            (``None``: all).
    """

    def __init__(
        self,
        *,
        geometry: Geometry | str,
        num_out: int,
        context_dim: int = 32,
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
        num_output_layers: int = 2,
        head_hidden_dim: int | None = None,
        feed_forward: str = "mlp",
        num_latent_layers: int = 0,
        latent_k_nearest: int | None = None,
    ) -> None:
        super().__init__()
        if num_out < 1:
            raise ValueError(f"num_out must be >= 1, got {num_out}")
        self.geometry = get(geometry)
        self.num_out = num_out
        self.context_dim = context_dim
        if feed_forward not in FEED_FORWARDS:
            raise ValueError(f"feed_forward must be one of {FEED_FORWARDS}, got {feed_forward!r}")
        if head_hidden_dim is not None and head_hidden_dim < 1:
            raise ValueError(f"head_hidden_dim must be None or >= 1, got {head_hidden_dim}")
        if num_latent_layers < 0:
            raise ValueError(f"num_latent_layers must be >= 0, got {num_latent_layers}")
        self.feed_forward = feed_forward
        self.latent_attention = (
            LatentSelfAttention(
                geometry=self.geometry,
                context_dim=context_dim,
                num_layers=num_latent_layers,
                num_heads=num_heads,
                k_nearest=latent_k_nearest,
                num_frequencies=num_query_frequencies // 2 or 1,
                freq_scale=query_freq_scale,
            )
            if num_latent_layers > 0
            else None
        )
        self.attention = BiInvariantCrossAttention(
            geometry=self.geometry,
            context_dim=context_dim,
            hidden_dim=hidden_dim,
            num_heads=num_heads,
            num_query_frequencies=num_query_frequencies,
            num_value_frequencies=num_value_frequencies,
            query_freq_scale=query_freq_scale,
            value_freq_scale=value_freq_scale,
            value_hidden_dim=value_hidden_dim,
            k_nearest=k_nearest,
            k_nearest_mode=k_nearest_mode,
            use_window=use_window,
            channel_modulation=channel_modulation,
        )
        width = hidden_dim if head_hidden_dim is None else head_hidden_dim
        layers: list[nn.Module] = []
        if feed_forward == "geglu":
            if width != hidden_dim:
                layers.append(nn.Linear(hidden_dim, width))
            layers += [GatedFeedForward(dim=width) for _ in range(num_output_layers)]
            layers.append(nn.LayerNorm(width))
        else:
            for i in range(num_output_layers):
                layers += [nn.Linear(hidden_dim if i == 0 else width, width), nn.GELU()]
            if num_output_layers == 0:
                width = hidden_dim
        layers.append(nn.Linear(width, num_out))
        self.head = nn.Sequential(*layers)
        #: an optional fixed field added to the output (:mod:`enf.nn.background`; set by the fitting module
        #: from the data, e.g. a zonal mean): the latents then encode deviations from it
        self.register_module("background", None)

    def forward(self, coords: Tensor, latents: Latents, *, chunk_size: int | None = None) -> Tensor:
        """Decode ``coords [B, N, coord_dim]`` with ``latents`` (batch ``B``) -> ``[B, N, num_out]``.

        ``chunk_size`` decodes the coordinates in chunks (same result, bounded memory).

        Raises:
            TypeError: ``coords`` is not a tensor (e.g. a numpy array: use ``torch.from_numpy``), ``latents``
                is not :class:`~enf.Latents`, or the dtypes of coords, latents and parameters differ.
            ValueError: wrong shapes, ``N = 0`` or ``L = 0``, NaN/inf in coords or in a latent part
                (poses/context/window, named), or a window ``<= 0``.
        """
        self._check_inputs(coords, latents)
        if chunk_size is not None and chunk_size < 1:
            raise ValueError(f"chunk_size must be a positive int or None, got {chunk_size}")
        if self.latent_attention is not None:  # once per call, not once per chunk
            latents = self.latent_attention(latents)
        if chunk_size is not None and coords.shape[1] > chunk_size:
            parts = [self._decode(c, latents) for c in coords.split(chunk_size, dim=1)]
            return torch.cat(parts, dim=1)
        return self._decode(coords, latents)

    def _decode(self, coords: Tensor, latents: Latents) -> Tensor:
        out = self.head(self.attention(coords, latents))
        return out if self.background is None else out + self.background(coords)

    def _check_inputs(self, coords: Tensor, latents: Latents) -> None:
        """Types, shapes, dtypes and values of the inputs; one host sync for all value checks."""
        geom = self.geometry
        if not isinstance(coords, Tensor):
            kind = f"{type(coords).__module__}.{type(coords).__name__}"
            hint = " (convert with torch.from_numpy(coords))" if type(coords).__module__ == "numpy" else ""
            raise TypeError(f"coords must be a torch.Tensor, got {kind}; pass torch tensors{hint}")
        if not isinstance(latents, Latents):
            raise TypeError(
                f"latents must be enf.Latents (built from torch tensors, e.g. torch.from_numpy), "
                f"got {type(latents).__name__}"
            )
        if latents.has_time_axis:
            raise ValueError(
                f"latents have a time axis ({latents.num_times} times, poses {tuple(latents.poses.shape)}); "
                "decode one time at a time: model(coords, z.at_time(t))"
            )
        if coords.dim() != 3 or coords.shape[-1] != geom.coord_dim:
            raise ValueError(
                f"coords must be [B, N, {geom.coord_dim}] for geometry {geom.name!r}, got {tuple(coords.shape)}"
            )
        if latents.poses.shape[-1] != geom.pose_dim:
            raise ValueError(
                f"latent poses must have pose_dim {geom.pose_dim} for geometry {geom.name!r}, "
                f"got {tuple(latents.poses.shape)}"
            )
        if latents.context.shape[-1] != self.context_dim:
            raise ValueError(
                f"latent context must have width {self.context_dim}, got {tuple(latents.context.shape)}"
            )
        if latents.batch_size != coords.shape[0]:
            raise ValueError(f"coords batch {coords.shape[0]} and latents batch {latents.batch_size} differ")
        if coords.shape[1] == 0:
            raise ValueError(
                f"coords has no points (N = 0, shape {tuple(coords.shape)}); pass N >= 1 coordinates"
            )
        if latents.num_latents == 0:
            raise ValueError(
                f"latents have no points (L = 0, poses shape {tuple(latents.poses.shape)}); pass L >= 1 latents"
            )
        param_dtype = self.head[-1].weight.dtype
        parts = {"coords": coords, "latents.poses": latents.poses}
        parts |= {"latents.context": latents.context, "latents.window": latents.window}
        for name, value in parts.items():
            if value.dtype != param_dtype:
                raise TypeError(
                    f"dtype mismatch: {name} is {value.dtype} but the model parameters are {param_dtype}; "
                    f"convert one side, e.g. model.double() / model.to({value.dtype}) or "
                    f"{name.split('.')[0]}.to({param_dtype})"
                )
        if latents.batch_size == 0:
            return
        flags = torch.stack(
            [torch.isfinite(v).all() for v in parts.values()] + [(latents.window > 0).all()]
        ).tolist()  # one host sync
        for (name, value), ok in zip(parts.items(), flags[:-1], strict=True):
            if not ok:
                bad = ~torch.isfinite(value)
                where = bad.nonzero()[0].tolist()
                raise ValueError(
                    f"{name} contains NaN or inf ({int(bad.sum())} entries, first at index {where}); "
                    "every coordinate and latent must be finite"
                )
        if not flags[-1]:
            raise ValueError(
                f"latents.window must be positive, got min {float(latents.window.min()):.3g}; "
                "windows are widths s > 0"
            )
