"""Kendall shape space for geometric symbols (DESIGN §8): pre-shapes, Procrustes alignment, the Kendall
distance and geodesics (:mod:`enf.shape.kendall`), and hyperspherical distributions on the pre-shape sphere
(:mod:`enf.shape.distributions`: Power Spherical and von Mises–Fisher, with KL to the uniform prior), and the
canonicalising similarity-equivariant encoder (:mod:`enf.shape.encoder`: landmarks, frame, canonical
pre-shape, concentration), the VAE on top (:class:`ShapeVAE`) and its non-equivariant control
(:class:`PlainVAE`).

    s = enf.shape.preshape(points)            # [B, K, d] -> [B, (K-1)*d] unit vectors
    d = enf.shape.kendall_distance(a, b)      # [B, K, d] x [B, K, d] -> [B], similarity invariant
"""

from enf.shape.bessel import log_bessel_ive
from enf.shape.distributions import (
    PowerSpherical,
    VonMisesFisher,
    sample_uniform_sphere,
    uniform_sphere_log_area,
)
from enf.shape.encoder import MIN_CONCENTRATION, ShapeEncoder, ShapeEncoding
from enf.shape.kendall import (
    exp_map,
    from_preshape,
    helmert,
    kendall_distance,
    log_map,
    preshape,
    preshape_geodesic,
    preshape_matrix,
    procrustes_align,
    procrustes_distance,
    shape_geodesic,
)
from enf.shape.plain import PlainVAE
from enf.shape.vae import ShapeVAE, ShapeVAEOutput

__all__ = [
    "MIN_CONCENTRATION",
    "PlainVAE",
    "PowerSpherical",
    "ShapeEncoder",
    "ShapeEncoding",
    "ShapeVAE",
    "ShapeVAEOutput",
    "VonMisesFisher",
    "exp_map",
    "from_preshape",
    "helmert",
    "kendall_distance",
    "log_bessel_ive",
    "log_map",
    "preshape",
    "preshape_geodesic",
    "preshape_matrix",
    "procrustes_align",
    "procrustes_distance",
    "sample_uniform_sphere",
    "shape_geodesic",
    "uniform_sphere_log_area",
]
