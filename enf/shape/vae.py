"""The canonicalising shape VAE: point cloud -> pose + shape code on the pre-shape sphere -> point cloud.

    vae = ShapeVAE(space_dim=2, num_landmarks=8, num_out_points=25, out_feature_dim=32)
    out = vae(positions, features)           # positions [B, N, d], features [B, N, F]
    out.points, out.features                 # [B, M, d] reposed reconstruction, [B, M, F'] invariant features
    out.code                                 # [B, (K-1) d] the shape code (a sample, or the mean)
    loss = mse(out.points, positions) + beta * out.kl

:class:`~enf.shape.ShapeEncoder` gives K landmarks, a pose (centroid, scale, frame) and the canonical
pre-shape ``[B, K-1, d]``; the posterior is a hyperspherical distribution (Power Spherical by default, or
von Mises–Fisher) centred on the flattened pre-shape with the encoder's invariant concentration; the prior
is uniform on ``S^{(K-1) d - 1}`` (``kl`` is the KL divergence to it). The decoder maps a code to ``M``
canonical-frame points (and invariant features, e.g. an ENF latent's context) with an MLP, and
:meth:`ShapeEncoding.repose` puts them back in the input's pose: ``points = scale * canonical @ R^T +
centroid``. The code is invariant to similarity transforms of the input, and with ``sample=False`` (the
posterior mean direction as code) the reconstruction is equivariant: ``points(gX) = g points(X)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from einops import rearrange
from torch import Tensor, nn
from torch.distributions import Distribution

from enf.shape.distributions import PowerSpherical, VonMisesFisher, sample_uniform_sphere
from enf.shape.encoder import ShapeEncoder, ShapeEncoding

__all__ = ["ShapeVAE", "ShapeVAEOutput"]

Posterior = Literal["power_spherical", "von_mises_fisher"]
_POSTERIORS = {"power_spherical": PowerSpherical, "von_mises_fisher": VonMisesFisher}


def mlp(width_in: int, hidden_dim: int, num_layers: int, width_out: int) -> nn.Sequential:
    """``num_layers`` linear layers with GELUs between them (the VAE decoders and the plain VAE's encoder)."""
    layers: list[nn.Module] = []
    width = width_in
    for _ in range(num_layers - 1):
        layers += [nn.Linear(width, hidden_dim), nn.GELU()]
        width = hidden_dim
    layers.append(nn.Linear(width, width_out))
    return nn.Sequential(*layers)


@dataclass(frozen=True)
class ShapeVAEOutput:
    """What :meth:`ShapeVAE.forward` returns.

    Attributes:
        encoding: the encoder's :class:`~enf.shape.ShapeEncoding` (landmarks, pose, pre-shape, concentration);
            ``None`` for :class:`~enf.shape.PlainVAE`, which has no pose.
        posterior: the distribution over codes (batch ``[B]``, event ``[(K-1) d]``).
        code: ``[B, (K-1) d]`` the code decoded (a reparameterised sample, or the posterior's mean direction).
        canonical: ``[B, M, d]`` decoded points in the canonical frame (invariant).
        points: ``[B, M, d]`` decoded points reposed into the input's frame (equivariant).
        features: ``[B, M, F']`` decoded invariant point features, or ``None`` when ``out_feature_dim == 0``.
        kl: ``[B]`` KL divergence of the posterior to the uniform prior on the sphere.
    """

    encoding: ShapeEncoding | None
    posterior: Distribution
    code: Tensor
    canonical: Tensor
    points: Tensor
    features: Tensor | None
    kl: Tensor

    def pose_vectors(self, canonical: Tensor) -> Tensor:
        """Canonical-frame vectors ``[B, M, d]`` (e.g. decoded orientations) turned into the input's frame,
        ``canonical @ rotation^T`` (no scale, no translation); unchanged without an encoding."""
        if self.encoding is None:
            return canonical
        return torch.einsum("bmd,bed->bme", canonical, self.encoding.rotation)


class ShapeVAE(nn.Module):
    """Encoder, hyperspherical posterior and point decoder of the canonicalising shape VAE.

    Args:
        space_dim: ``d``, 2 or 3.
        num_landmarks: ``K``, landmarks predicted by the encoder; the code lives on ``S^{(K-1) d - 1}``.
        num_out_points: ``M``, points the decoder produces (the input's landmarks, or an ENF latent cloud).
        feature_dim: invariant features per input point (0 for bare landmarks).
        out_feature_dim: invariant features per decoded point (e.g. the ENF context width; 0: none).
        hidden_dim, num_layers: widths of the encoder (:class:`~enf.shape.ShapeEncoder`).
        decoder_hidden_dim, decoder_layers: the decoder MLP.
        posterior: ``"power_spherical"`` (default) or ``"von_mises_fisher"``.
        reflections: let the frame be improper, so mirror images share a code.
        init_concentration: the posterior concentration every shape starts with (default ``10 (K-1) d``).
    """

    def __init__(
        self,
        *,
        space_dim: int,
        num_landmarks: int,
        num_out_points: int,
        feature_dim: int = 0,
        out_feature_dim: int = 0,
        hidden_dim: int = 64,
        num_layers: int = 2,
        decoder_hidden_dim: int = 128,
        decoder_layers: int = 3,
        posterior: Posterior = "power_spherical",
        reflections: bool = False,
        init_concentration: float | None = None,
    ) -> None:
        super().__init__()
        if posterior not in _POSTERIORS:
            raise ValueError(f"posterior must be one of {sorted(_POSTERIORS)}, got {posterior!r}")
        for label, value, low in (("num_out_points", num_out_points, 1), ("out_feature_dim", out_feature_dim, 0),
                                  ("decoder_hidden_dim", decoder_hidden_dim, 1), ("decoder_layers", decoder_layers, 1)):  # fmt: skip
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{label} must be an int >= {low}, got {value!r}")
        self.encoder = ShapeEncoder(
            space_dim=space_dim,
            feature_dim=feature_dim,
            num_landmarks=num_landmarks,
            hidden_dim=hidden_dim,
            num_layers=num_layers,
            reflections=reflections,
            init_concentration=init_concentration,
        )
        self.space_dim = space_dim
        self.feature_dim = feature_dim
        self.num_landmarks = num_landmarks
        self.num_out_points = num_out_points
        self.out_feature_dim = out_feature_dim
        self.code_dim = (num_landmarks - 1) * space_dim
        self.posterior_name = posterior
        self.decoder = mlp(
            self.code_dim, decoder_hidden_dim, decoder_layers, num_out_points * (space_dim + out_feature_dim)
        )

    def posterior(self, encoding: ShapeEncoding) -> Distribution:
        """The posterior over codes: centred on the flattened canonical pre-shape, invariant concentration."""
        loc = rearrange(encoding.preshape, "b k d -> b (k d)")
        return _POSTERIORS[self.posterior_name](loc, encoding.concentration)

    def decode(self, code: Tensor) -> tuple[Tensor, Tensor | None]:
        """Canonical points ``[B, M, d]`` and features ``[B, M, F']`` (or ``None``) of codes ``[B, (K-1) d]``."""
        if code.ndim != 2 or code.shape[-1] != self.code_dim:
            raise ValueError(
                f"code must be [B, {self.code_dim}] (points of S^{self.code_dim - 1}), got {tuple(code.shape)}"
            )
        out = rearrange(self.decoder(code), "b (m c) -> b m c", m=self.num_out_points)
        points = out[..., : self.space_dim]
        features = out[..., self.space_dim :] if self.out_feature_dim else None
        return points, features

    def forward(
        self,
        positions: Tensor,
        features: Tensor | None = None,
        mask: Tensor | None = None,
        *,
        sample: bool = True,
    ) -> ShapeVAEOutput:
        """Encode ``positions [B, N, d]`` (``features [B, N, F]``, ``mask [B, N]``), draw a code (or take the
        mean direction with ``sample=False``), decode and repose."""
        encoding = self.encoder(positions, features, mask)
        posterior = self.posterior(encoding)
        code = posterior.rsample() if sample else posterior.loc
        canonical, out_features = self.decode(code)
        return ShapeVAEOutput(
            encoding=encoding,
            posterior=posterior,
            code=code,
            canonical=canonical,
            points=encoding.repose(canonical),
            features=out_features,
            kl=posterior.kl_to_uniform(),
        )

    @torch.no_grad()
    def sample_prior(
        self, num_samples: int, *, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        """Codes drawn uniformly on the sphere and their decodings: ``(code [S, (K-1) d], canonical [S, M, d],
        features [S, M, F'] or None)``, in the canonical frame (pose them with an encoding's ``repose``)."""
        param = next(self.parameters())
        code = sample_uniform_sphere((num_samples,), self.code_dim, dtype=param.dtype, device=param.device,
                                     generator=generator)  # fmt: skip
        return (code, *self.decode(code))
