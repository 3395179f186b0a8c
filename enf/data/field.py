"""``FieldSpec``: what a field dataset is, so tasks pick their metrics, figures and checkpoint monitor.

A data module describes its signals with one ``FieldSpec``; it travels to the model as a plain dict
(``spec.to_dict()``, linked by the CLI, stored in checkpoints) and back with ``FieldSpec.from_dict``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor

__all__ = ["FIELD_KINDS", "FieldKind", "FieldSpec"]

FieldKind = Literal["image", "plane", "torus", "sphere", "ball", "points", "sdf"]
FIELD_KINDS = ("image", "plane", "torus", "sphere", "ball", "points", "sdf")


@dataclass(frozen=True)
class FieldSpec:
    """Description of the signals of a dataset.

    Attributes:
        kind: how the coordinates are laid out and drawn: ``image`` (pixel grid, :mod:`enf.data.grid`),
            ``plane``/``torus`` (a planar ``[nx, ny]`` PDE grid, ``coords[i, j] = (x_i, y_j)``), ``sphere``
            (``[nlat, nlon]`` unit vectors), ``ball`` (``[nphi, ntheta, nr]`` Cartesian points) or
            ``points`` (unstructured) or ``sdf`` (signed distances of 3-D shapes at unstructured points,
            negative inside: occupancy IoU and Chamfer metrics, meshes drawn by marching cubes).
        coord_dim: coordinate width.
        num_channels: signal channels ``C``.
        grid_shape: the grid the ``N`` coordinates flatten (row-major); ``()`` for unstructured points.
        channel_names: one name per channel.
        data_range: the range of the (physical) signal for PSNR, e.g. ``1.0`` for images in ``[0, 1]``;
            ``None`` when no range is known (PSNR is then not reported).
        mean, std: per-channel normalisation the data module applied to ``signal``
            (``signal = (physical - mean) / std``); ``None``: the signal is on its physical scale.
        name: dataset name, for titles.
    """

    kind: FieldKind
    coord_dim: int
    num_channels: int
    grid_shape: tuple[int, ...] = ()
    channel_names: tuple[str, ...] = ()
    data_range: float | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    name: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in FIELD_KINDS:
            raise ValueError(f"FieldSpec.kind must be one of {FIELD_KINDS}, got {self.kind!r}")
        if self.num_channels < 1 or self.coord_dim < 1:
            raise ValueError(
                f"FieldSpec needs coord_dim >= 1 and num_channels >= 1, got {self.coord_dim}, {self.num_channels}"
            )
        object.__setattr__(self, "grid_shape", tuple(int(s) for s in self.grid_shape))
        names = tuple(str(c) for c in self.channel_names) or tuple(f"c{i}" for i in range(self.num_channels))
        if len(names) != self.num_channels:
            raise ValueError(f"FieldSpec: {len(names)} channel names for {self.num_channels} channels")
        object.__setattr__(self, "channel_names", names)
        for label in ("mean", "std"):
            value = getattr(self, label)
            if value is not None:
                value = tuple(float(v) for v in value)
                if not all(math.isfinite(v) for v in value):
                    raise ValueError(f"FieldSpec.{label} must be finite, got {value}")
                if len(value) != self.num_channels:
                    raise ValueError(f"FieldSpec.{label} needs {self.num_channels} values, got {len(value)}")
                object.__setattr__(self, label, value)
        if (self.mean is None) != (self.std is None):
            raise ValueError("FieldSpec: give both mean and std, or neither")
        if self.std is not None and min(self.std) <= 0:
            raise ValueError(f"FieldSpec.std must be positive, got {self.std}")

    @property
    def normalized(self) -> bool:
        return self.mean is not None

    def denormalize(self, signal: Tensor) -> Tensor:
        """``[..., C]`` normalised signal -> physical scale (identity when not normalised)."""
        if self.mean is None:
            return signal
        mean = torch.tensor(self.mean, dtype=signal.dtype, device=signal.device)
        std = torch.tensor(self.std, dtype=signal.dtype, device=signal.device)
        return signal * std + mean

    def to_dict(self) -> dict[str, Any]:
        """Plain types only (safe for ``torch.load(weights_only=True)`` and YAML)."""
        out = asdict(self)
        out["grid_shape"] = list(self.grid_shape)
        out["channel_names"] = list(self.channel_names)
        for label in ("mean", "std"):
            if out[label] is not None:
                out[label] = list(out[label])
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any] | FieldSpec) -> FieldSpec:
        if isinstance(data, FieldSpec):
            return data
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"FieldSpec: unknown keys {sorted(unknown)}")
        return cls(**data)
