"""``PlainVAE``: the non-equivariant control of :class:`~enf.shape.ShapeVAE` (same interface, same code size).

An MLP reads the flattened point cloud (positions and features of every point, in the input's own frame),
a diagonal Gaussian posterior with a standard normal prior gives a code of ``code_dim`` numbers, and an MLP
decodes the code to ``M`` points and features in absolute coordinates. No pose is factored out, so rotating
the input changes the code: it is the baseline the shape code's rotation invariance is measured against.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import Tensor, nn
from torch.distributions import Normal, kl_divergence

from enf.shape.vae import ShapeVAEOutput, mlp

__all__ = ["PlainVAE"]


class PlainVAE(nn.Module):
    """Gaussian VAE on a flattened point cloud ``[B, N, d + F]`` -> ``[B, M, d + F']``.

    Args:
        space_dim: ``d``.
        num_points: ``N``, input points (the order of the points is part of the input).
        code_dim: size of the code (match ``ShapeVAE.code_dim = (K - 1) d`` for a like-for-like comparison).
        num_out_points: ``M``, decoded points.
        feature_dim: invariant features per input point.
        out_feature_dim: features per decoded point.
        hidden_dim, num_layers: the encoder MLP.
        decoder_hidden_dim, decoder_layers: the decoder MLP.

    ``forward`` returns a :class:`~enf.shape.ShapeVAEOutput` with ``encoding=None`` and ``canonical`` equal
    to ``points`` (there is no canonical frame).
    """

    def __init__(
        self,
        *,
        space_dim: int,
        num_points: int,
        code_dim: int,
        num_out_points: int,
        feature_dim: int = 0,
        out_feature_dim: int = 0,
        hidden_dim: int = 256,
        num_layers: int = 3,
        decoder_hidden_dim: int = 128,
        decoder_layers: int = 3,
    ) -> None:
        super().__init__()
        for label, value, low in (
            ("space_dim", space_dim, 1),
            ("num_points", num_points, 1),
            ("code_dim", code_dim, 1),
            ("num_out_points", num_out_points, 1),
            ("feature_dim", feature_dim, 0),
            ("out_feature_dim", out_feature_dim, 0),
            ("num_layers", num_layers, 1),
            ("decoder_layers", decoder_layers, 1),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{label} must be an int >= {low}, got {value!r}")
        self.space_dim, self.num_points, self.code_dim = space_dim, num_points, code_dim
        self.feature_dim, self.num_out_points, self.out_feature_dim = (
            feature_dim,
            num_out_points,
            out_feature_dim,
        )
        self.encoder = mlp(num_points * (space_dim + feature_dim), hidden_dim, num_layers, 2 * code_dim)
        self.decoder = mlp(
            code_dim, decoder_hidden_dim, decoder_layers, num_out_points * (space_dim + out_feature_dim)
        )

    def decode(self, code: Tensor) -> tuple[Tensor, Tensor | None]:
        """Points ``[B, M, d]`` and features ``[B, M, F']`` (or ``None``) of codes ``[B, code_dim]``."""
        if code.ndim != 2 or code.shape[-1] != self.code_dim:
            raise ValueError(f"code must be [B, {self.code_dim}], got {tuple(code.shape)}")
        out = rearrange(self.decoder(code), "b (m c) -> b m c", m=self.num_out_points)
        return out[..., : self.space_dim], (out[..., self.space_dim :] if self.out_feature_dim else None)

    def forward(
        self,
        positions: Tensor,
        features: Tensor | None = None,
        mask: Tensor | None = None,
        *,
        sample: bool = True,
    ) -> ShapeVAEOutput:
        """Encode ``positions [B, N, d]`` (``features [B, N, F]``), draw a code (the mean with
        ``sample=False``) and decode. ``mask`` is not supported (the MLP needs every point)."""
        if mask is not None:
            raise ValueError("PlainVAE reads a fixed number of points; it takes no mask")
        if positions.ndim != 3 or positions.shape[1:] != (self.num_points, self.space_dim):
            raise ValueError(
                f"positions must be [B, {self.num_points}, {self.space_dim}], got {tuple(positions.shape)}"
            )
        parts = [positions]
        if self.feature_dim:
            if (
                features is None
                or features.shape[:2] != positions.shape[:2]
                or features.shape[-1] != self.feature_dim
            ):
                raise ValueError(
                    f"features must be [B, {self.num_points}, {self.feature_dim}], "
                    f"got {None if features is None else tuple(features.shape)}"
                )
            parts.append(features)
        stats = self.encoder(rearrange(torch.cat(parts, -1), "b n c -> b (n c)"))
        mean, raw_scale = stats.chunk(2, dim=-1)
        posterior = Normal(mean, nn.functional.softplus(raw_scale) + 1e-4)
        code = posterior.rsample() if sample else mean
        points, out_features = self.decode(code)
        prior = Normal(torch.zeros_like(mean), torch.ones_like(mean))
        return ShapeVAEOutput(
            encoding=None,
            posterior=posterior,
            code=code,
            canonical=points,
            points=points,
            features=out_features,
            kl=kl_divergence(posterior, prior).sum(-1),
        )

    @torch.no_grad()
    def sample_prior(
        self, num_samples: int, *, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        """Codes from the standard normal prior and their decodings ``(code, points, features)``."""
        param = next(self.parameters())
        code = torch.randn(num_samples, self.code_dim, generator=generator, dtype=param.dtype).to(
            param.device
        )
        return (code, *self.decode(code))
