"""Canonicalising equivariant shape encoder: a point cloud -> K landmarks, a pose and a Kendall pre-shape.

Conventions (those of :mod:`enf.shape.kendall`): points are **rows**, ``x [B, N, d]``; a similarity acts as
``g(x) = s x R_g + t`` (``s > 0``, ``R_g`` orthogonal, ``t [d]``; on column vectors ``R_g^T x``).

:class:`ShapeEncoder` predicts, from similarity-invariant messages (pairwise distances and distances to the
masked centroid, divided by the cloud's RMS radius, random-Fourier-embedded, plus the invariant features):

* ``landmarks [B, K, d]``: ``landmarks[b, k] = sum_i w[b, k, i] x[b, i]`` with ``w = softmax_i(logits)``
  (affine weights: ``landmarks(gX) = g(landmarks(X))`` for every similarity, reflections included);
* ``centroid = mean_k landmarks`` ``[B, d]`` and ``scale = |landmarks - centroid|_F`` ``[B]``;
* ``rotation [B, d, d]``: an orthonormal frame with the frame vectors as **columns**, built from equivariant
  vectors ``v = mean_i a_i (x_i - m) / rms`` (``a_i`` invariant scalars, ``m`` the masked mean): in 2-D
  ``e1 = v / |v|``, ``e2 = rot90(e1)``; in 3-D ``gram_schmidt(v1, v2)`` (``e3 = e1 x e2``). It is a proper
  rotation and ``rotation(gX) = R_g^T rotation(X)`` for ``R_g`` in SO(d). With ``reflections=True`` all ``d``
  columns come from Gram-Schmidt of ``d`` such vectors (no rot90 / cross product): the frame may be improper
  and ``rotation(gX) = R_g^T rotation(X)`` for every ``R_g`` in O(d), so mirror images share a pre-shape;
* ``preshape = H (landmarks - centroid) rotation / scale = preshape_matrix(landmarks) @ rotation``
  ``[B, K-1, d]`` (``H`` the Helmert sub-matrix): a unit Frobenius-norm point on ``S^{(K-1) d - 1}``,
  **invariant** to similarities (to SO(d) ones; to O(d) ones with ``reflections=True``);
* ``concentration [B]``: ``init_concentration * exp(invariant pooled readout) + MIN_CONCENTRATION``; the
  readout starts near 0 (so every shape starts near ``init_concentration``, by default ``10 (K-1) d``: informative
  codes from the first step) and is clamped to ``[-20, 12]``. (A softplus readout would need ~10^5 Adam steps
  to reach the concentrations of ``S^29``.)

Repose identity (exact): with ``canonical = from_preshape(preshape) = (landmarks - centroid) rotation /
scale`` (``[B, K, d]``, :attr:`ShapeEncoding.canonical`),
``repose(y) = scale * y @ rotation^T + centroid`` gives ``repose(canonical) == landmarks``.

Degenerate input (a cloud whose symmetry leaves no direction or no shape, e.g. a regular polygon with equal
features): the frame vectors ``v`` are measured in units of the RMS radius; a Gram-Schmidt residual of
length ``<= FRAME_EPS`` is replaced by a fixed standard basis vector, and landmarks of size
``scale <= SIZE_EPS * rms`` get the fixed pre-shape ``e_{1,1}`` (first entry 1). Such outputs are finite and
valid (orthonormal frame, unit pre-shape) but not equivariant: the orientation is undefined there anyway.
Above the thresholds every formula above holds exactly. Padded points (``mask == False``) are zeroed before
anything is computed: they influence no
output, even when they hold NaN.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from enf.geometry.frames import gram_schmidt
from enf.nn.embedding import RandomFourierFeatures
from enf.shape._helmert import helmert

__all__ = ["FRAME_EPS", "MIN_CONCENTRATION", "SIZE_EPS", "ShapeEncoder", "ShapeEncoding"]

#: Threshold on the Gram-Schmidt residuals of the frame vectors (units of the RMS radius).
FRAME_EPS = 1e-9
#: Threshold on the landmark size ``scale``, relative to the RMS radius of the input cloud.
SIZE_EPS = 1e-9
#: Floor added to the softplus concentration.
MIN_CONCENTRATION = 1e-3


@dataclass(frozen=True)
class ShapeEncoding:
    """Output of :class:`ShapeEncoder` (conventions in the module docstring).

    Attributes:
        landmarks: ``[B, K, d]`` predicted landmarks (affine combinations of the input points).
        centroid: ``[B, d]`` mean of the landmarks.
        scale: ``[B]`` Frobenius size ``|landmarks - centroid|_F``.
        rotation: ``[B, d, d]`` the frame, columns = frame vectors; ``rotation(gX) = R_g^T rotation(X)``.
        preshape: ``[B, K-1, d]`` canonical pre-shape ``preshape_matrix(landmarks) @ rotation``.
        concentration: ``[B]`` positive invariant concentration.
    """

    landmarks: Tensor
    centroid: Tensor
    scale: Tensor
    rotation: Tensor
    preshape: Tensor
    concentration: Tensor

    @property
    def canonical(self) -> Tensor:
        """``[B, K, d]`` centred unit-size landmarks in the frame: ``H^T preshape`` (= ``from_preshape``)."""
        h = helmert(self.preshape.shape[-2] + 1, dtype=self.preshape.dtype, device=self.preshape.device)
        return torch.einsum("jk,bjd->bkd", h, self.preshape)

    def repose(self, canonical: Tensor) -> Tensor:
        """Canonical-frame points ``[B, M, d]`` -> world: ``scale * canonical @ rotation^T + centroid``."""
        d = self.rotation.shape[-1]
        if not isinstance(canonical, Tensor) or canonical.ndim != 3 or canonical.shape[-1] != d:
            shape = tuple(canonical.shape) if isinstance(canonical, Tensor) else type(canonical).__name__
            raise ValueError(f"canonical must be [B, M, {d}] canonical-frame points, got {shape}")
        if canonical.shape[0] != self.rotation.shape[0]:
            raise ValueError(
                f"canonical has batch size {canonical.shape[0]} but the encoding has {self.rotation.shape[0]}"
            )
        world = torch.einsum("bmd,bed->bme", canonical, self.rotation)  # canonical @ rotation^T
        return self.scale[:, None, None] * world + self.centroid[:, None, :]


def _rot90(v: Tensor) -> Tensor:
    """``J v`` for 2-D vectors ``[..., 2]`` (rotation by +90 degrees; commutes with SO(2))."""
    return torch.stack([-v[..., 1], v[..., 0]], dim=-1)


def _safe_length(square: Tensor) -> Tensor:
    """``sqrt(square)`` with value and gradient 0 where ``square == 0`` (coincident or padded points)."""
    positive = square > 0
    return torch.where(positive, torch.sqrt(torch.where(positive, square, torch.ones_like(square))), 0.0)


def _positive_int(label: str, value: object, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{label} must be an int >= {minimum}, got {value!r}")
    return value


class _Block(nn.Module):
    """``h <- h + MLP(LN(mean_{j valid} K_ij * V h_j))``: one residual message-passing block."""

    def __init__(self, *, hidden_dim: int) -> None:
        super().__init__()
        self.kernel = nn.Linear(hidden_dim, hidden_dim)
        self.value = nn.Linear(hidden_dim, hidden_dim, bias=False)
        self.norm = nn.LayerNorm(hidden_dim)
        self.mlp = nn.Sequential(
            nn.Linear(hidden_dim, 2 * hidden_dim), nn.GELU(), nn.Linear(2 * hidden_dim, hidden_dim)
        )

    def forward(self, h: Tensor, basis: Tensor, weight: Tensor) -> Tensor:
        # h [B, N, H], basis [B, N(i), N(j), H], weight [B, N(j)] = mask / count (zero on padding)
        messages = torch.einsum("bijh,bjh->bih", self.kernel(basis), self.value(h) * weight[..., None])
        return h + self.mlp(self.norm(messages))


class ShapeEncoder(nn.Module):
    """Similarity-equivariant encoder of point clouds into landmarks, a frame and a Kendall pre-shape.

    Args:
        space_dim: ``d``, 2 or 3.
        feature_dim: invariant input features per point (e.g. the ENF context); 0 for bare landmarks.
        num_landmarks: ``K >= 2`` predicted landmarks.
        hidden_dim: width of the node and edge features.
        num_layers: residual message-passing blocks.
        num_frequencies: random Fourier frequencies of the distance invariants.
        reflections: let the frame be improper (O(d) instead of SO(d)): mirror images then share a shape.
        init_concentration: the concentration every shape starts with (default ``10 (K-1) d``).

    Shapes: ``forward(positions [B, N, d], features [B, N, F] | None, mask [B, N] bool | None)`` ->
    :class:`ShapeEncoding`; see the module docstring for the conventions.
    """

    def __init__(
        self,
        *,
        space_dim: int,
        feature_dim: int = 0,
        num_landmarks: int,
        hidden_dim: int = 64,
        num_layers: int = 2,
        num_frequencies: int = 16,
        reflections: bool = False,
        init_concentration: float | None = None,
    ) -> None:
        super().__init__()
        if space_dim not in (2, 3) or isinstance(space_dim, bool):
            raise ValueError(f"space_dim must be 2 or 3, got {space_dim!r}")
        self.feature_dim = _positive_int("feature_dim", feature_dim, minimum=0)
        self.num_landmarks = _positive_int("num_landmarks", num_landmarks, minimum=2)
        _positive_int("hidden_dim", hidden_dim)
        _positive_int("num_layers", num_layers, minimum=0)
        _positive_int("num_frequencies", num_frequencies)
        if not isinstance(reflections, bool):
            raise TypeError(f"reflections must be a bool, got {type(reflections).__name__}")
        self.space_dim, self.reflections = space_dim, reflections
        # equivariant vectors needed for the frame: d with Gram-Schmidt only, d - 1 with rot90 / cross
        self.num_vectors = space_dim if reflections else space_dim - 1

        def embed() -> nn.Module:
            return nn.Sequential(
                RandomFourierFeatures(in_dim=1, num_frequencies=num_frequencies),
                nn.Linear(2 * num_frequencies, hidden_dim),
                nn.GELU(),
            )

        self.edge_embedding = embed()  # [B, N, N, H] tensors dominate the cost: one layer only
        self.radial_embedding = embed()
        self.node_in = nn.Linear(hidden_dim + self.feature_dim, hidden_dim)
        self.blocks = nn.ModuleList(_Block(hidden_dim=hidden_dim) for _ in range(num_layers))
        self.out_norm = nn.LayerNorm(hidden_dim)
        self.landmark_logits = nn.Linear(hidden_dim, num_landmarks)
        self.vector_weights = nn.Linear(hidden_dim, self.num_vectors)
        self.concentration_out = nn.Sequential(
            nn.Linear(hidden_dim, hidden_dim), nn.GELU(), nn.Linear(hidden_dim, 1)
        )
        nn.init.normal_(self.concentration_out[-1].weight, std=1e-3)  # readout ~ 0, gradients everywhere
        nn.init.zeros_(self.concentration_out[-1].bias)
        if init_concentration is None:
            init_concentration = 10.0 * (num_landmarks - 1) * space_dim
        if not (isinstance(init_concentration, int | float) and 0 < init_concentration < 1e8):
            raise ValueError(f"init_concentration must be a number in (0, 1e8), got {init_concentration!r}")
        self.init_concentration = float(init_concentration)

    # ----------------------------------------------------------------------------------- checks
    def _check(
        self, positions: object, features: object, mask: object
    ) -> tuple[Tensor, Tensor | None, Tensor]:
        d = self.space_dim
        if not isinstance(positions, Tensor) or not positions.is_floating_point():
            raise TypeError(
                f"positions must be a floating-point torch.Tensor [B, N, {d}], got {getattr(positions, 'dtype', type(positions).__name__)}; cast it with .double() or .float()"
            )
        if positions.ndim != 3 or positions.shape[-1] != d:
            raise ValueError(
                f"positions must be [B, N, {d}] (space_dim={d}), got shape {tuple(positions.shape)}"
            )
        b, n = positions.shape[:2]
        if n < 2:
            raise ValueError(f"positions needs N >= 2 points per cloud, got shape {tuple(positions.shape)}")
        if mask is None:
            mask = torch.ones(b, n, dtype=torch.bool, device=positions.device)
        elif not isinstance(mask, Tensor) or mask.dtype != torch.bool or tuple(mask.shape) != (b, n):
            got = (mask.dtype, tuple(mask.shape)) if isinstance(mask, Tensor) else type(mask).__name__
            raise ValueError(f"mask must be a bool tensor [B, N] = [{b}, {n}], got {got}")
        counts = mask.sum(-1)
        if bool((counts < 2).any()):
            rows = torch.nonzero(counts < 2).flatten()[:4].tolist()
            raise ValueError(
                f"mask leaves fewer than 2 valid points in row(s) {rows}; every cloud needs >= 2"
            )
        if self.feature_dim == 0:
            if features is not None and not (isinstance(features, Tensor) and features.shape[-1] == 0):
                raise ValueError("features were given but the encoder has feature_dim=0; pass features=None")
            features = None
        else:
            if not isinstance(features, Tensor) or not features.is_floating_point():
                raise TypeError(
                    f"features must be a floating-point tensor [B, N, {self.feature_dim}] "
                    f"(feature_dim={self.feature_dim}), got {type(features).__name__}"
                )
            if tuple(features.shape) != (b, n, self.feature_dim):
                raise ValueError(
                    f"features must be [B, N, F] = [{b}, {n}, {self.feature_dim}], got {tuple(features.shape)}"
                )
            if features.dtype != positions.dtype:
                raise TypeError(
                    f"features dtype {features.dtype} differs from positions dtype {positions.dtype}"
                )
        with torch.no_grad():
            for name, t in (("positions", positions), ("features", features)):
                if t is not None and bool((~torch.isfinite(t.detach()) & mask[..., None]).any()):
                    raise ValueError(
                        f"{name} contains NaN/inf at valid (unmasked) points; remove or mask them"
                    )
        return positions, features, mask

    # ----------------------------------------------------------------------------------- parts
    @staticmethod
    def _node_invariants(centred: Tensor, rms: Tensor) -> Tensor:
        """``[B, N, 1]`` distance of each point to the masked centroid, in units of the RMS radius."""
        return _safe_length(centred.square().sum(-1, keepdim=True)) / rms[:, None, None]

    @staticmethod
    def _edge_invariants(centred: Tensor, rms: Tensor) -> Tensor:
        """``[B, N, N, 1]`` pairwise distances in units of the RMS radius (the diagonal is exactly 0)."""
        diff = centred[:, :, None, :] - centred[:, None, :, :]
        return _safe_length(diff.square().sum(-1, keepdim=True)) / rms[:, None, None, None]

    def _frame(self, vectors: Tensor) -> Tensor:
        """``[B, V, d]`` equivariant vectors (units of the RMS radius) -> ``[B, d, d]`` frame (columns).

        Sequential Gram-Schmidt of the ``V`` vectors; a residual of length ``<= FRAME_EPS`` is replaced by
        the standard basis vector with the largest residual (a non-equivariant fallback for clouds whose
        symmetry leaves no direction). Without reflections the last column is ``rot90(e1)`` (2-D) or comes
        from :func:`~enf.geometry.frames.gram_schmidt` (``e3 = e1 x e2``, 3-D): a proper rotation.
        """
        d = self.space_dim
        basis = torch.eye(d, dtype=vectors.dtype, device=vectors.device)
        columns: list[Tensor] = []

        def residual(v: Tensor) -> Tensor:
            for e in columns:
                v = v - (v * e).sum(-1, keepdim=True) * e
            return v

        for k in range(self.num_vectors):
            r = residual(vectors[:, k])
            with torch.no_grad():
                candidates = torch.stack([residual(basis[j].expand_as(r)) for j in range(d)], dim=1)
                best = candidates.square().sum(-1).argmax(dim=1)  # [B]
                fallback = candidates[torch.arange(r.shape[0], device=r.device), best]
            ok = r.square().sum(-1, keepdim=True) > FRAME_EPS**2
            r = torch.where(ok, r, fallback)
            columns.append(r / _safe_length(r.square().sum(-1, keepdim=True)))
        if self.reflections:
            return torch.stack(columns, dim=-1)
        if d == 2:
            return torch.stack([columns[0], _rot90(columns[0])], dim=-1)
        return gram_schmidt(columns[0], columns[1])

    def _fallback(self, x: Tensor) -> Tensor:
        """``[1, K-1, d]`` fixed unit pre-shape used when the landmarks collapse to one point."""
        z = torch.zeros(1, self.num_landmarks - 1, self.space_dim, dtype=x.dtype, device=x.device)
        z[0, 0, 0] = 1.0
        return z

    # ----------------------------------------------------------------------------------- forward
    def forward(
        self, positions: Tensor, features: Tensor | None = None, mask: Tensor | None = None
    ) -> ShapeEncoding:
        """Encode ``positions [B, N, d]`` (with ``features [B, N, F]``, ``mask [B, N]``) into a ShapeEncoding."""
        positions, features, mask = self._check(positions, features, mask)
        valid = mask[..., None]
        x = torch.where(valid, positions, torch.zeros((), dtype=positions.dtype, device=positions.device))
        weight = mask.to(x.dtype) / mask.sum(-1, keepdim=True).to(x.dtype)  # [B, N]: masked mean weights
        mean = torch.einsum("bn,bnd->bd", weight, x)
        centred = torch.where(valid, x - mean[:, None, :], torch.zeros_like(x))
        rms = torch.sqrt(torch.einsum("bn,bn->b", weight, centred.square().sum(-1)))
        with torch.no_grad():
            tiny = rms <= 1000.0 * torch.finfo(x.dtype).eps * x.abs().amax(dim=(-2, -1))
            if bool(tiny.any()):
                rows = torch.nonzero(tiny).flatten()[:4].tolist()
                raise ValueError(f"positions: the valid points of row(s) {rows} coincide (zero size)")

        basis = self.edge_embedding(self._edge_invariants(centred, rms))  # [B, N, N, H]
        node = self.radial_embedding(self._node_invariants(centred, rms))
        if features is not None:
            feats = torch.where(valid, features, torch.zeros((), dtype=x.dtype, device=x.device))
            node = torch.cat([node, feats], dim=-1)
        h = self.node_in(node)
        for block in self.blocks:
            h = block(h, basis, weight)
        h = self.out_norm(h)

        logits = self.landmark_logits(h).masked_fill(~valid, -math.inf)  # [B, N, K]
        w = torch.softmax(logits, dim=1)
        landmarks = torch.einsum("bnk,bnd->bkd", w, x)
        centroid = landmarks.mean(dim=1)
        lm_centred = landmarks - centroid[:, None, :]
        scale = _safe_length(lm_centred.square().sum(dim=(-2, -1)))

        a = self.vector_weights(h)  # [B, N, V] invariant weights
        vectors = torch.einsum("bn,bnv,bnd->bvd", weight, a, centred) / rms[:, None, None]
        rotation = self._frame(vectors)

        k = self.num_landmarks
        hmat = helmert(k, dtype=x.dtype, device=x.device)
        sized = (scale > SIZE_EPS * rms)[:, None, None]
        preshape = torch.einsum("jk,bkd,bde->bje", hmat, lm_centred, rotation)
        preshape = torch.where(
            sized, preshape / torch.where(sized, scale[:, None, None], 1.0), self._fallback(x)
        )

        pooled = torch.einsum("bn,bnh->bh", weight, h)
        readout = self.concentration_out(pooled).squeeze(-1).clamp(-20.0, 12.0)
        concentration = self.init_concentration * torch.exp(readout) + MIN_CONCENTRATION
        return ShapeEncoding(
            landmarks=landmarks,
            centroid=centroid,
            scale=scale,
            rotation=rotation,
            preshape=preshape,
            concentration=concentration,
        )

    def repose(self, canonical: Tensor, encoding: ShapeEncoding) -> Tensor:
        """Canonical-frame points ``[B, M, d]`` -> world: ``scale * canonical @ rotation^T + centroid``.

        ``repose(encoding.canonical, encoding) == encoding.landmarks`` (see the module docstring).
        """
        if not isinstance(encoding, ShapeEncoding):
            raise TypeError(f"encoding must be a ShapeEncoding, got {type(encoding).__name__}")
        return encoding.repose(canonical)

    def extra_repr(self) -> str:
        return (
            f"space_dim={self.space_dim}, feature_dim={self.feature_dim}, num_landmarks={self.num_landmarks}, "
            f"reflections={self.reflections}"
        )
