"""A fixed background field added to a decoder's output: the decoder then fits deviations from it.

:class:`ZonalProfile` is a function of latitude only, ``b(x) = profile(asin x_z)`` on the unit sphere,
linearly interpolated between the rows of a latitude-longitude grid (constant beyond the first and last
row). It is invariant under rotations about the z axis, so adding it keeps a ``sphere_axial`` field exactly
equivariant; under the full rotation group only constants are invariant, so a non-constant profile is
refused for ``sphere`` latents (:func:`check_background`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["BACKGROUND_GEOMETRIES", "ZonalProfile", "check_background"]

#: geometries under whose group action a zonal profile is invariant (``absolute_sphere``: no symmetry to keep)
BACKGROUND_GEOMETRIES = ("sphere_axial", "absolute_sphere")


class ZonalProfile(nn.Module):
    """``b(x) [..., C]`` at unit vectors ``x [..., 3]``: per-channel values given at increasing latitudes.

    Args:
        latitudes: ``[R]`` strictly increasing latitudes in radians (the grid rows).
        values: ``[R, C]`` the profile at those latitudes (e.g. the training data's zonal mean, in the
            units the decoder predicts).
    """

    def __init__(
        self, *, latitudes: Sequence[float] | Tensor, values: Sequence[Sequence[float]] | Tensor
    ) -> None:
        super().__init__()
        lat = torch.as_tensor(latitudes, dtype=torch.float64).reshape(-1)
        val = torch.as_tensor(values, dtype=torch.float64)
        if val.dim() != 2 or val.shape[0] != lat.shape[0] or lat.shape[0] < 2:
            raise ValueError(
                f"ZonalProfile needs latitudes [R] and values [R, C] with R >= 2, got {tuple(lat.shape)} and "
                f"{tuple(val.shape)}"
            )
        if not (torch.isfinite(lat).all() and torch.isfinite(val).all()):
            raise ValueError("ZonalProfile: latitudes and values must be finite")
        if not (lat[1:] > lat[:-1]).all() or lat.abs().max() > torch.pi / 2 + 1e-6:
            raise ValueError(
                f"ZonalProfile: latitudes must increase strictly within [-pi/2, pi/2], got {lat.tolist()}"
            )
        self.register_buffer("latitudes", lat.float())
        self.register_buffer("values", val.float())

    @property
    def num_channels(self) -> int:
        return int(self.values.shape[1])

    def forward(self, coords: Tensor) -> Tensor:
        """``coords [..., 3]`` (unit vectors) -> ``[..., C]`` in the dtype of ``coords``."""
        if coords.shape[-1] != 3:
            raise ValueError(
                f"ZonalProfile needs 3-D unit vectors, got coords of shape {tuple(coords.shape)}"
            )
        lat_nodes = self.latitudes.to(coords.dtype)
        values = self.values.to(coords.dtype)
        lat = torch.asin(coords[..., 2].clamp(-1.0, 1.0))
        lat = lat.clamp(lat_nodes[0], lat_nodes[-1])
        upper = torch.searchsorted(lat_nodes, lat.contiguous()).clamp(1, lat_nodes.shape[0] - 1)
        lo, hi = lat_nodes[upper - 1], lat_nodes[upper]
        weight = ((lat - lo) / (hi - lo)).unsqueeze(-1)  # [..., 1]
        return torch.lerp(values[upper - 1], values[upper], weight)

    def to_dict(self) -> dict[str, Any]:
        """Plain types (``FieldSpec.extra["background"]``)."""
        return {"kind": "zonal_mean", "latitudes": self.latitudes.tolist(), "values": self.values.tolist()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ZonalProfile:
        if data.get("kind") != "zonal_mean":
            raise ValueError(f"unknown background kind {data.get('kind')!r}; known: 'zonal_mean'")
        return cls(latitudes=data["latitudes"], values=data["values"])

    def extra_repr(self) -> str:
        return f"rows={self.latitudes.shape[0]}, channels={self.num_channels}"


def check_background(background: nn.Module, *, geometry_name: str, num_out: int) -> None:
    """Raise ``ValueError`` when ``background`` would break the decoder's symmetry or width."""
    if isinstance(background, ZonalProfile):
        if geometry_name not in BACKGROUND_GEOMETRIES:
            raise ValueError(
                f"a zonal background is not invariant under the rotations of geometry {geometry_name!r} (only "
                f"constants are); use one of {BACKGROUND_GEOMETRIES}, or background 'none'"
            )
        if background.num_channels != num_out:
            raise ValueError(
                f"the background has {background.num_channels} channels but the decoder has num_out={num_out}"
            )
