"""A conditional neural field on one global code: the vector-latent (DINo-like) baseline decoder."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from enf.geometry import Geometry, get
from enf.latents import Latents
from enf.nn.embedding import RandomFourierFeatures

__all__ = ["GlobalLatentField"]


class GlobalLatentField(nn.Module):
    """An MLP on Fourier features of ``x``, FiLM-modulated by one global code: ``f(x; z) -> [B, N, C]``.

    The code is the flattened context of the latents, ``c = vec(z.context) [B, L * context_dim]``
    (usually ``L = 1``). With ``h_0 = gamma(x) = [sin(2 pi x W), cos(2 pi x W)]``::

        [alpha_k, beta_k] = A_k c + a_k                                  (k = 1 .. num_layers)
        h_k = GELU((W_k h_{k-1} + b_k) * (1 + alpha_k) + beta_k)
        f(x; z) = W_out h_num_layers + b_out

    Every hidden layer gets its own per-channel scale ``1 + alpha_k`` and shift ``beta_k``, linear in the
    code (``a_k = 0`` at initialisation, so the scale starts around 1 and the shift around 0), so the code
    acts on every layer rather than through a few scalar functions of ``x``.

    **Not equivariant**: the poses and windows of the latents are ignored (they get no gradient), and ``x``
    enters as absolute coordinates. :attr:`geometry` is the geometry the coordinates live in (``absolute2d``,
    ``absolute_sphere``...): it fixes ``coord_dim``, and it is what the code that reads ``decoder.geometry``
    (the fitter's latents, the equivariance metric, the plots) uses. It is the decoder of the ``vector``
    forecasting baseline (``experiments/forecast.py``), a drop-in for
    :class:`~enf.nn.EquivariantNeuralField` (same call, ``geometry``, ``num_out`` and ``context_dim``).

    Args:
        geometry: a :class:`~enf.geometry.Geometry` or its registry name (coordinates ``[.., coord_dim]``).
        num_out: number of output channels ``C``.
        context_dim: width of each latent's context vector.
        hidden_dim: width of the hidden layers.
        num_layers: FiLM-modulated hidden layers (>= 1).
        num_frequencies: random Fourier frequencies of ``x`` (the embedding has ``2 * num_frequencies``).
        freq_scale: standard deviation of those frequencies, in cycles per unit of ``x``.
        num_latents: latents ``L`` whose contexts are concatenated into the code.

    Shapes: ``coords [B, N, coord_dim]``, latents ``[B, L, ...]`` -> ``[B, N, num_out]``.

    Example::

        >>> field = GlobalLatentField(geometry="absolute2d", num_out=1)
        >>> z = Latents(poses=torch.zeros(2, 1, 2), context=torch.randn(2, 1, 64), window=torch.ones(2, 1, 1))
        >>> field(torch.rand(2, 100, 2), z).shape
        torch.Size([2, 100, 1])
    """

    def __init__(
        self,
        *,
        geometry: Geometry | str,
        num_out: int,
        context_dim: int = 64,
        hidden_dim: int = 120,
        num_layers: int = 3,
        num_frequencies: int = 32,
        freq_scale: float = 1.0,
        num_latents: int = 1,
    ) -> None:
        super().__init__()
        for label, value in (
            ("num_out", num_out),
            ("context_dim", context_dim),
            ("hidden_dim", hidden_dim),
            ("num_layers", num_layers),
            ("num_frequencies", num_frequencies),
            ("num_latents", num_latents),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{label} must be a positive int, got {value!r}")
        self.geometry = get(geometry)
        self.num_out = num_out
        self.context_dim = context_dim
        self.num_latents = num_latents
        self.embedding = RandomFourierFeatures(
            in_dim=self.geometry.coord_dim, num_frequencies=num_frequencies, freq_scale=freq_scale
        )
        code_dim = num_latents * context_dim
        widths = [self.embedding.out_dim] + [hidden_dim] * num_layers
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:], strict=True))
        self.film = nn.ModuleList(nn.Linear(code_dim, 2 * hidden_dim) for _ in range(num_layers))
        for film in self.film:
            nn.init.zeros_(film.bias)  # scale 1 + alpha, shift beta: the identity modulation at code 0
        self.out = nn.Linear(hidden_dim, num_out)
        self.register_module("background", None)  # as EquivariantNeuralField.background

    def forward(self, coords: Tensor, latents: Latents, *, chunk_size: int | None = None) -> Tensor:
        """Decode ``coords [B, N, coord_dim]`` with the code of ``latents [B, ...]`` -> ``[B, N, num_out]``.

        ``chunk_size`` decodes the coordinates in chunks (same result, bounded memory).

        Raises:
            TypeError: ``coords`` is not a tensor, ``latents`` is not :class:`~enf.Latents`, or the dtypes of
                coords, context and parameters differ.
            ValueError: wrong shapes (coordinate width, context width, number of latents, batch), a time
                axis on the latents, ``N = 0``, or NaN/inf in coords or context.
        """
        self._check_inputs(coords, latents)
        if chunk_size is not None and chunk_size < 1:
            raise ValueError(f"chunk_size must be a positive int or None, got {chunk_size}")
        code = rearrange(latents.context, "b l c -> b 1 (l c)")
        # every layer's [alpha, beta] from the code once, shared by all coordinates: [B, 1, 2 H] each
        films = [film(code).chunk(2, dim=-1) for film in self.film]
        if chunk_size is not None and coords.shape[1] > chunk_size:
            return torch.cat([self._decode(c, films) for c in coords.split(chunk_size, dim=1)], dim=1)
        return self._decode(coords, films)

    def _decode(self, coords: Tensor, films: list[tuple[Tensor, Tensor]]) -> Tensor:
        h = self.embedding(coords)  # [B, N, 2F]
        for layer, (alpha, beta) in zip(self.layers, films, strict=True):
            h = F.gelu(layer(h) * (1.0 + alpha) + beta)  # [B, N, H]
        out = self.out(h)  # [B, N, num_out]
        return out if self.background is None else out + self.background(coords)

    def _check_inputs(self, coords: Tensor, latents: Latents) -> None:
        if not isinstance(coords, Tensor):
            raise TypeError(
                f"coords must be a torch.Tensor, got {type(coords).__module__}.{type(coords).__name__}"
            )
        if not isinstance(latents, Latents):
            raise TypeError(f"latents must be enf.Latents, got {type(latents).__name__}")
        if latents.has_time_axis:
            raise ValueError(
                f"latents have a time axis ({latents.num_times} times, context "
                f"{tuple(latents.context.shape)}); decode one time at a time: model(coords, z.at_time(t))"
            )
        geom = self.geometry
        if coords.dim() != 3 or coords.shape[-1] != geom.coord_dim:
            raise ValueError(
                f"coords must be [B, N, {geom.coord_dim}] for geometry {geom.name!r}, "
                f"got {tuple(coords.shape)}"
            )
        if coords.shape[1] == 0:
            raise ValueError(
                f"coords has no points (N = 0, shape {tuple(coords.shape)}); pass N >= 1 coordinates"
            )
        context = latents.context
        if context.shape[-1] != self.context_dim:
            raise ValueError(f"latent context must have width {self.context_dim}, got {tuple(context.shape)}")
        if latents.num_latents != self.num_latents:
            raise ValueError(
                f"this field takes {self.num_latents} latent(s) (num_latents), got {latents.num_latents} "
                f"(context {tuple(context.shape)})"
            )
        if latents.batch_size != coords.shape[0]:
            raise ValueError(f"coords batch {coords.shape[0]} and latents batch {latents.batch_size} differ")
        param_dtype = self.out.weight.dtype
        for name, value in (("coords", coords), ("latents.context", context)):
            if value.dtype != param_dtype:
                raise TypeError(
                    f"dtype mismatch: {name} is {value.dtype} but the model parameters are {param_dtype}; "
                    f"convert one side, e.g. model.to({value.dtype})"
                )
        finite = torch.stack([torch.isfinite(coords).all(), torch.isfinite(context).all()]).tolist()
        for name, ok in zip(("coords", "latents.context"), finite, strict=True):
            if not ok:
                raise ValueError(f"{name} contains NaN or inf; every coordinate and context must be finite")
